"""PNG figures with matplotlib (headless): robustness curves, ROC curves, accuracy vs error with reject."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..norms import Norm
from ..contract import SummaryKind
from ..reject_metrics import has_reject_scores, roc
from ..store import atomic_write_bytes
from . import Report


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> Path:
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    atomic_write_bytes(path, buffer.getvalue())
    return path


def plot_curves(report: Report, path: Path) -> Path:
    """Accuracy vs epsilon, one panel per norm, one colour per defense: the worst case over
    attacks as a thick line where available, each attack as a thin line."""
    plt = pyplot()
    curves = report.curves
    norms = list(dict.fromkeys(curves["norm"]))
    defenses = list(dict.fromkeys(curves["defense"]))
    colours = {d: f"C{i % 10}" for i, d in enumerate(defenses)}
    fig, axes = plt.subplots(1, len(norms), figsize=(5.5 * len(norms), 4), squeeze=False)
    for ax, norm in zip(axes[0], norms):
        panel = curves[curves["norm"] == norm]
        styles = ["--", ":", "-.", (0, (5, 1)), (0, (1, 1))]
        for (defense, attack), curve in panel.groupby(["defense", "attack"], sort=False):
            worst = curve["kind"].iloc[0] == SummaryKind.WORST_CASE
            attacks = list(dict.fromkeys(panel.loc[panel["kind"] != SummaryKind.WORST_CASE, "attack"]))
            style = "-" if worst else styles[attacks.index(attack) % len(styles)]
            fixed = curve["kind"].iloc[0] == SummaryKind.FIXED_EPSILON
            ax.plot(curve["epsilon"], 100 * curve["accuracy"], linestyle=style, color=colours[defense],
                    linewidth=2.5 if worst else 1.2, marker="o" if fixed or worst else None, markersize=3,
                    label=f"{defense}: {attack}")
        ax.set_title(f"{Norm(norm).label} attacks")
        ax.set_xlabel(f"epsilon ({Norm(norm).label})")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Robustness curves")
    path = save_figure(fig, path)
    plt.close(fig)
    return path


def plot_roc(report: Report, path: Path) -> Path | None:
    """ROC of each reject-option defense: clean inputs vs successful adversarial examples."""
    cells = [cell for cell in report.run.cells.values() if has_reject_scores(cell)]
    if not cells:
        return None
    plt = pyplot()
    defenses = list(dict.fromkeys(cell.defense for cell in cells))
    fig, axes = panel_grid(plt, len(defenses), width=5, height=4.5)
    for ax, defense in zip(axes, defenses):
        curves = []
        for cell in (c for c in cells if c.defense == defense):
            for eps in cell.epsilons:
                fpr, tpr, auc = roc(report.run.outcomes(cell, eps))
                if len(fpr):
                    curves.append((fpr, tpr, f"{cell.attack} eps {eps:g} (AUC {auc:.3f})"))
        for (fpr, tpr, label), (colour, style) in zip(curves, line_styles(len(curves))):
            ax.plot(fpr, tpr, color=colour, linestyle=style, label=label)
        ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8, linestyle=":")
        ax.set_title(defense)
        ax.set_xlabel("clean inputs flagged")
        ax.set_ylabel("adversarial examples detected")
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = save_figure(fig, path)
    plt.close(fig)
    return path


PANELS_PER_ROW = 4


def panel_grid(plt, count: int, width: float = 4.2, height: float = 3.6):
    """A figure with `count` panels laid out PANELS_PER_ROW to a row (unused ones hidden)."""
    columns = min(count, PANELS_PER_ROW)
    rows = -(-count // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(width * columns, height * rows), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[count:]:
        ax.set_visible(False)
    return fig, flat[:count]


def line_styles(count: int) -> list[tuple[str, object]]:
    """(colour, line style) pairs, all distinct for up to 40 lines: ten colours, then dashes."""
    dashes = ["-", "--", ":", "-."]
    return [(f"C{i % 10}", dashes[(i // 10) % len(dashes)]) for i in range(count)]


def _panel_per_attack(table, path: Path, draw, xlabel: str, ylabel: str) -> Path:
    """One panel per (attack, epsilon) of a threshold-sweep table, in rows of PANELS_PER_ROW;
    `draw(ax, rows)` fills it."""
    plt = pyplot()
    keys = list(dict.fromkeys(zip(table["attack"], table["epsilon"])))
    fig, axes = panel_grid(plt, len(keys))
    for ax, (attack, eps) in zip(axes, keys):
        draw(ax, table[(table["attack"] == attack) & np.isclose(table["epsilon"], eps)])
        ax.set_title(f"{attack}, eps {eps:g}", fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = save_figure(fig, path)
    plt.close(fig)
    return path


def plot_reject_tradeoff(report: Report, path: Path) -> Path | None:
    """Standard accuracy vs robust error over thresholds (paper 001 Eq. 14-15); plain classifiers as points."""
    table = report.tradeoff
    if table.empty or not table["reject_option"].any():
        return None

    colours = {d: f"C{i % 10}" for i, d in enumerate(dict.fromkeys(table["defense"]))}

    def draw(ax, panel) -> None:
        for (defense, reject), rows in panel.groupby(["defense", "reject_option"], sort=False):
            if reject:
                ax.plot(rows["error_with_reject"], rows["accuracy_with_reject"], label=defense, color=colours[defense])
            else:
                ax.scatter(rows["error_with_reject"], rows["accuracy_with_reject"], marker="x", s=60, label=defense,
                           color=colours[defense])

    return _panel_per_attack(table, path, draw, "error on perturbed inputs", "accuracy on clean inputs")


def plot_detection(report: Report, path: Path) -> Path | None:
    """TPR on clean inputs vs FPR on perturbed inputs over thresholds (paper 001 Eq. 7-8, Fig. 2a)."""
    table = report.tradeoff
    if table.empty or not table["reject_option"].any():
        return None

    def draw(ax, panel) -> None:
        for defense, rows in panel.groupby("defense", sort=False):
            ax.plot(rows["adversarial_accept_error"], rows["clean_accept_rate"], label=defense)

    return _panel_per_attack(table[table["reject_option"]], path, draw,
                             "FPR: perturbed inputs accepted and misclassified", "TPR: clean inputs accepted")


def write_plots(report: Report, directory: Path) -> list[Path]:
    made = [plot_curves(report, directory / "curves.png"), plot_roc(report, directory / "roc.png"),
            plot_reject_tradeoff(report, directory / "reject_tradeoff.png"),
            plot_detection(report, directory / "detection.png")]
    return [p for p in made if p is not None]


def plot_image_grid(images, titles: list[str], path: Path, title: str) -> Path:
    """Rows: target classes; for each of the row's inputs, one column per title (clean, then models)."""
    plt = pyplot()
    classes, per_class, variants = images.shape[:3]
    fig, axes = plt.subplots(classes, per_class * variants, figsize=(0.9 * per_class * variants, 0.9 * classes),
                             squeeze=False)
    for t in range(classes):
        for i in range(per_class):
            for v in range(variants):
                ax = axes[t][i * variants + v]
                image = images[t, i, v].detach().cpu()
                ax.imshow(image.permute(1, 2, 0).squeeze(-1).clamp(0, 1).numpy(), cmap="gray", vmin=0, vmax=1)
                ax.set_xticks([])
                ax.set_yticks([])
                if t == 0:
                    ax.set_title(titles[v], fontsize=6)
            axes[t][0].set_ylabel(f"to {t}", fontsize=7)
    fig.suptitle(title, fontsize=9)
    path = save_figure(fig, path)
    plt.close(fig)
    return path
