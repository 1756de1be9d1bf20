"""`advbench show`: saved adversarial inputs next to their clean inputs, as papers show them.

Rows are the clean input (its label and the defense's clean prediction), the adversarial
input (the prediction the runner recorded for it, or "rejected" when a reject-option
defense refused it) and the perturbation, scaled so that its largest coordinate fills the
grey range (mid-grey is no change). Predictions come from the verified records, never from
rerunning a model, so the picture shows exactly what the tables counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..data import Dataset
from ..errors import AdvbenchError
from ..norms import parse_norm
from ..saved_adversarials import saved_problem
from ..store import RunStore
from .plots import pyplot, save_figure


@dataclass(frozen=True)
class Gallery:
    """What one picture shows: `count` samples of one cell at one epsilon."""

    cell: str
    defense: str
    attack: str
    norm: str
    epsilon: float  # NaN: a minimum-norm attack's own examples
    samples: list[int]
    clean: torch.Tensor  # [n, C, H, W] on [0, 1]
    adversarial: torch.Tensor
    labels: list[int]
    clean_preds: list[int]
    adv_preds: list[int]
    rejected: list[bool | None]  # None: the defense has no reject option


def choose_cell(store: RunStore, defense: str | None, attack: str | None) -> str:
    """The cell to show: the one matching --defense/--attack among cells with saved inputs."""
    manifest = store.manifest()
    saved = [c for c in manifest.cells if c.id in manifest.adversarials and c.id in manifest.finished]
    if not saved:
        raise AdvbenchError(f"run {store.run_id} kept no adversarial inputs; run it with --save-adversarials")
    matching = [c for c in saved if (defense is None or c.defense == defense) and (attack is None or c.attack == attack)]
    if not matching:
        offered = ", ".join(f"{c.defense} x {c.attack}" for c in saved)
        raise AdvbenchError(f"run {store.run_id} has no saved adversarials for defense {defense or 'any'} x attack "
                            f"{attack or 'any'} (saved: {offered})")
    return matching[0].id


def gallery(store: RunStore, data: Dataset, cell_id: str, epsilon: float | None = None, count: int = 8) -> Gallery:
    """`count` clean-correct samples of a cell (the first ones; all samples if fewer are correct)."""
    manifest = store.manifest()
    info = next(c for c in manifest.cells if c.id == cell_id)
    saved = store.read_adversarials(cell_id, manifest.adversarials[cell_id])
    records = store.read_cell(cell_id, manifest.finished[cell_id])
    ids = records["sample"].astype(int)
    if ids.min() < 0 or ids.max() >= len(data.test_y):
        raise AdvbenchError(f"run {store.run_id}, cell {cell_id}: its records name test samples that "
                            f"{data.info.name} does not have")
    clean_inputs = data.test_x[torch.tensor(list(dict.fromkeys(ids)), dtype=torch.long)]
    problem = saved_problem(saved, info, records, clean_inputs, data.info.bounds)
    if problem:
        raise AdvbenchError(f"run {store.run_id}, cell {cell_id}: the saved adversarials file "
                            f"{store.adversarials_path(cell_id)} {problem}; rerun the cell with --save-adversarials")
    epsilons = [float(e) for e in saved["epsilons"]]
    if epsilon is None:
        index = len(epsilons) - 1
    else:
        close = [i for i, e in enumerate(epsilons) if not math.isnan(e) and math.isclose(e, epsilon, rel_tol=1e-6)]
        if not close:
            shown = ", ".join("minimum-norm" if math.isnan(e) else f"{e:g}" for e in epsilons)
            raise AdvbenchError(f"cell {cell_id} was not run at epsilon {epsilon:g} (saved: {shown})")
        index = close[0]
    eps = epsilons[index]
    rows = records if math.isnan(eps) else records[np.isclose(records["epsilon"], eps)]
    rows = rows.set_index("sample")
    order = [int(s) for s in saved["samples"]]
    correct = [s for s in order if rows.at[s, "clean_pred"] == rows.at[s, "label"]]
    chosen = (correct if len(correct) >= count else order)[:count]
    position = {s: i for i, s in enumerate(order)}
    threshold = manifest.defenses.get(info.defense).reject_threshold if info.defense in manifest.defenses else None
    rejected = [None if threshold is None or pd.isna(rows.at[s, "adv_score"]) else bool(rows.at[s, "adv_score"] > threshold)
                for s in chosen]
    return Gallery(cell_id, info.defense, info.attack, parse_norm(info.norm).label, eps, chosen,
                   data.test_x[torch.tensor(chosen, dtype=torch.long)],
                   saved["adversarials"][index][torch.tensor([position[s] for s in chosen], dtype=torch.long)],
                   [int(rows.at[s, "label"]) for s in chosen], [int(rows.at[s, "clean_pred"]) for s in chosen],
                   [int(rows.at[s, "adv_pred"]) for s in chosen], rejected)


def _image(tensor: torch.Tensor) -> tuple[np.ndarray, str | None]:
    array = tensor.detach().cpu().clamp(0, 1).permute(1, 2, 0).numpy()
    return (array[..., 0], "gray") if array.shape[-1] == 1 else (array, None)


def draw_gallery(shown: Gallery, path: Path) -> Path:
    """Clean / adversarial / perturbation rows, one column per sample, as a PNG."""
    plt = pyplot()
    n = len(shown.samples)
    fig, axes = plt.subplots(3, n, figsize=(1.45 * n + 0.9, 5.0), squeeze=False)
    delta = shown.adversarial - shown.clean
    for j in range(n):
        scale = float(delta[j].abs().max()) or 1.0
        pictures = [shown.clean[j], shown.adversarial[j], 0.5 + 0.5 * delta[j] / scale]
        adv_text = "rejected" if shown.rejected[j] else f"pred {shown.adv_preds[j]}"
        fooled = shown.rejected[j] is not True and shown.adv_preds[j] != shown.labels[j]
        titles = [f"label {shown.labels[j]}\npred {shown.clean_preds[j]}", adv_text,
                  f"{shown.norm} {_size(delta[j], shown.norm):.3g}"]
        colours = ["black", "red" if fooled else "black", "black"]
        for i, (picture, title, colour) in enumerate(zip(pictures, titles, colours)):
            ax = axes[i][j]
            image, cmap = _image(picture)
            ax.imshow(image, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(title, fontsize=8, color=colour)
    for i, name in enumerate(["clean", "adversarial", "perturbation\n(scaled)"]):
        axes[i][0].set_ylabel(name, fontsize=9)
    where = "minimum-norm examples" if math.isnan(shown.epsilon) else f"{shown.norm} eps {shown.epsilon:g}"
    fig.suptitle(f"{shown.defense} x {shown.attack}, {where} (red: misclassified and accepted)", fontsize=9)
    path = save_figure(fig, Path(path))
    plt.close(fig)
    return path


def _size(delta: torch.Tensor, norm: str) -> float:
    return float(delta.abs().max()) if norm == "Linf" else float(delta.flatten().norm())
