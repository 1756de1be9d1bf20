"""PNG figures with matplotlib (headless): robustness curves, ROC curves, the reject option.

Every panel holds at most MAX_SERIES series (more are split over panels), legends sit
outside the axes, and a fixed-epsilon attack run at one epsilon is a marker, not a line."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..contract import CellRole, SummaryKind
from ..norms import Norm
from ..reject_metrics import has_reject_scores, roc
from ..store import atomic_write_bytes
from . import Report

if TYPE_CHECKING:
    import pandas as pd


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


MAX_SERIES = 8  # lines (or point sets) a panel may hold before it is split
PANELS_PER_ROW = 4


def chunks(items: list, size: int = MAX_SERIES) -> list[list]:
    """`items` split into runs of at most `size` (one panel each)."""
    return [items[i:i + size] for i in range(0, len(items), size)] or [[]]


def outside_legend(ax) -> None:
    """The legend right of the axes, never over the data (the figure grows to hold it)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


def _draw_curve(ax, curve, colour: str, style: object, label: str, width: float = 1.2) -> None:
    """A curve as a line; a fixed-epsilon attack run at one epsilon as a single marker (a line
    from the clean accuracy at 0 would invent the points between)."""
    fixed = curve["kind"].iloc[0] == SummaryKind.FIXED_EPSILON
    measured = curve[curve["epsilon"] > 0]
    if fixed and len(measured) == 1:
        ax.scatter(measured["epsilon"], 100 * measured["accuracy"], color=colour, marker="o", s=28, label=label)
        return
    ax.plot(curve["epsilon"], 100 * curve["accuracy"], linestyle=style, color=colour, linewidth=width,
            marker="o" if fixed or len(curve) <= 20 else None, markersize=3,  # dense curves: no markers
            label=label)


def _accuracy_axes(ax, norm: str, title: str) -> None:
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(f"epsilon ({Norm(norm).label})", fontsize=8)
    ax.set_ylabel("accuracy (%)", fontsize=8)
    ax.set_ylim(-2, 102)
    ax.grid(alpha=0.3)
    outside_legend(ax)


def _evaluated_curves(report: Report) -> "pd.DataFrame":
    """The curves without the sanity attacks (they check the others; the flags report them)."""
    sanity = report.run.sanity_pairs()
    keep = [(d, a) not in sanity for d, a in zip(report.curves["defense"], report.curves["attack"])]
    return report.curves[keep]


def plot_curves(report: Report, path: Path) -> Path:
    """The story at a glance: per norm, one line per defense, its worst case over the attacks
    (its only attack where it faced one), at most MAX_SERIES defenses a panel."""
    plt = pyplot()
    curves = _evaluated_curves(report)
    panels = []
    for norm in dict.fromkeys(curves["norm"]):
        of_norm = curves[curves["norm"] == norm]
        series = []
        for defense, rows in of_norm.groupby("defense", sort=False):
            worst = rows[rows["kind"] == SummaryKind.WORST_CASE]
            if not worst.empty:
                series.append((defense, f"{defense} ({worst['attack'].iloc[0]})", worst))
            else:
                for attack, curve in rows.groupby("attack", sort=False):
                    series.append((defense, f"{defense} ({attack})", curve))
        panels += [(norm, chunk) for chunk in chunks(series)]
    defenses = list(dict.fromkeys(curves["defense"]))
    colours = {d: f"C{i % 10}" for i, d in enumerate(defenses)}
    fig, axes = panel_grid(plt, len(panels), width=5.5, height=3.8)
    for ax, (norm, series) in zip(axes, panels):
        for defense, label, curve in series:
            _draw_curve(ax, curve, colours[defense], "-", label, width=1.8)
        _accuracy_axes(ax, norm, f"{Norm(norm).label}: each defense's worst case")
    fig.tight_layout()
    return _save_and_close(plt, fig, path)


def plot_attack_curves(report: Report, path: Path) -> Path | None:
    """The detail behind `plot_curves`: one panel per defense and norm with each attack's curve
    and the worst case (thick), at most MAX_SERIES series a panel (more attacks: more panels).
    None when no defense faced two attacks of a norm: `plot_curves` already draws each one."""
    curves = _evaluated_curves(report)
    attacked = curves[curves["kind"] != SummaryKind.WORST_CASE]
    if attacked.empty or attacked.groupby(["defense", "norm"])["attack"].nunique().max() < 2:
        return None
    plt = pyplot()
    panels = []
    for (defense, norm), rows in curves.groupby(["defense", "norm"], sort=False):
        worst = rows[rows["kind"] == SummaryKind.WORST_CASE]
        attacks = [(a, c) for a, c in rows[rows["kind"] != SummaryKind.WORST_CASE].groupby("attack", sort=False)]
        per_panel = MAX_SERIES - (0 if worst.empty else 1)
        panels += [(defense, norm, chunk, worst) for chunk in chunks(attacks, per_panel)]
    fig, axes = panel_grid(plt, len(panels), width=5.0, height=3.6)
    for ax, (defense, norm, attacks, worst) in zip(axes, panels):
        for (attack, curve), (colour, style) in zip(attacks, line_styles(len(attacks))):
            _draw_curve(ax, curve, colour, style, attack)
        if not worst.empty:
            _draw_curve(ax, worst, "black", "-", worst["attack"].iloc[0], width=2.5)
        _accuracy_axes(ax, norm, f"{defense}, {Norm(norm).label}")
    fig.tight_layout()
    return _save_and_close(plt, fig, path)


def plot_roc(report: Report, path: Path) -> Path | None:
    """ROC of each reject-option defense (clean inputs vs successful adversarial examples): one
    curve per attack, at the largest epsilon it was read at (the hardest case), MAX_SERIES a panel."""
    run = report.run
    cells = [cell for cell in run.cells.values() if has_reject_scores(cell) and cell.role is not CellRole.SANITY]
    panels = []
    for defense in dict.fromkeys(cell.defense for cell in cells):
        curves = []
        for cell in (c for c in cells if c.defense == defense):
            eps = max(cell.epsilons)
            fpr, tpr, auc = roc(run.outcomes(cell, eps))
            if len(fpr):
                curves.append((fpr, tpr, f"{cell.attack} eps {eps:g} (AUC {auc:.3f})"))
        panels += [(defense, chunk) for chunk in chunks(curves)]
    if not cells:
        return None
    plt = pyplot()
    fig, axes = panel_grid(plt, len(panels), width=5, height=4)
    for ax, (defense, curves) in zip(axes, panels):
        for (fpr, tpr, label), (colour, style) in zip(curves, line_styles(len(curves))):
            ax.plot(fpr, tpr, color=colour, linestyle=style, label=label)
        ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8, linestyle=":")
        ax.set_title(defense, fontsize=9)
        ax.set_xlabel("clean inputs flagged", fontsize=8)
        ax.set_ylabel("adversarial examples detected", fontsize=8)
        outside_legend(ax)
    fig.tight_layout()
    return _save_and_close(plt, fig, path)


def plot_reject_overview(report: Report, path: Path) -> Path | None:
    """For each reject-option defense and norm, against epsilon: the AUC of its reject score and
    the error at its own threshold T (perturbed inputs accepted and misclassified, paper 001
    Eq. 8), one line per attack, at most MAX_SERIES a panel. Per-attack threshold sweeps are
    `plot_reject_tradeoff` and `plot_detection` (on request)."""
    table = report.reject
    if table.empty:
        return None
    sanity = report.run.sanity_pairs()
    table = table[[(d, a) not in sanity for d, a in zip(table["defense"], table["attack"])]]
    table = table[np.isfinite(table["epsilon"].astype(float))]
    if table.empty:
        return None
    panels = []
    for (defense, norm), rows in table.groupby(["defense", "norm"], sort=False):
        attacks = list(rows.groupby("attack", sort=False))
        for chunk in chunks(attacks):
            panels += [(defense, norm, chunk, "auc", "AUC of the reject score"),
                       (defense, norm, chunk, "adversarial_accept_error", "error at T (accepted and wrong)")]
    plt = pyplot()
    fig, axes = panel_grid(plt, len(panels), width=5.0, height=3.4)
    for ax, (defense, norm, attacks, column, label) in zip(axes, panels):
        for (attack, rows), (colour, style) in zip(attacks, line_styles(len(attacks))):
            rows = rows.sort_values("epsilon")
            if len(rows) == 1:
                ax.scatter(rows["epsilon"], rows[column], color=colour, s=28, label=attack)
            else:
                ax.plot(rows["epsilon"], rows[column], color=colour, linestyle=style, marker="o", markersize=3,
                        label=attack)
        ax.set_title(f"{defense}, {Norm(norm).label}", fontsize=9)
        ax.set_xlabel(f"epsilon ({Norm(norm).label})", fontsize=8)
        ax.set_ylabel(label, fontsize=8)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        outside_legend(ax)
    fig.tight_layout()
    return _save_and_close(plt, fig, path)


def _save_and_close(plt, fig, path: Path) -> Path:
    path = save_figure(fig, path)
    plt.close(fig)
    return path


def panel_grid(plt, count: int, width: float = 4.2, height: float = 3.6):
    """A figure with `count` panels laid out PANELS_PER_ROW to a row (unused ones hidden)."""
    count = max(count, 1)
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
        outside_legend(ax)
    fig.tight_layout()
    return _save_and_close(plt, fig, path)


def plot_reject_tradeoff(report: Report, path: Path) -> Path | None:
    """Standard accuracy vs robust error over thresholds (paper 001 Eq. 14-15), one panel per
    attack and epsilon; plain classifiers as points."""
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
    """TPR on clean inputs vs FPR on perturbed inputs over thresholds (paper 001 Eq. 7-8, Fig. 2a),
    one panel per attack and epsilon."""
    table = report.tradeoff
    if table.empty or not table["reject_option"].any():
        return None

    def draw(ax, panel) -> None:
        for defense, rows in panel.groupby("defense", sort=False):
            ax.plot(rows["adversarial_accept_error"], rows["clean_accept_rate"], label=defense)

    return _panel_per_attack(table[table["reject_option"]], path, draw,
                             "FPR: perturbed inputs accepted and misclassified", "TPR: clean inputs accepted")


def write_plots(report: Report, directory: Path, *, per_attack: bool = False) -> list[Path]:
    """The figures: the curves summary and their per-defense detail, ROC and the reject-option
    overview; with `per_attack`, also the threshold sweeps in one panel per attack and epsilon."""
    made = [plot_curves(report, directory / "curves.png"),
            plot_attack_curves(report, directory / "curves_by_defense.png"),
            plot_roc(report, directory / "roc.png"), plot_reject_overview(report, directory / "reject.png")]
    if per_attack:
        made += [plot_reject_tradeoff(report, directory / "reject_tradeoff.png"),
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
