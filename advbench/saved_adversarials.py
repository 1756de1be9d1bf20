"""Checks on a cell's saved adversarial inputs (`--save-adversarials`) before anything uses them.

A saved file is trusted only as far as it agrees with the cell's records: the same sample
ids in the same order, the cell's epsilons, one finite input per sample and epsilon and,
when the clean inputs are at hand, every input inside the data bounds and its epsilon ball.
Reuse and `advbench show` both ask here, so a truncated, reshaped or edited file is refused
with one line instead of failing somewhere deeper.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import torch

from .attacks.verify import verify_adversarials
from .contract import AttackKind, CellInfo
from .errors import AttackVerificationError

KEYS = ("samples", "epsilons", "adversarials")


def saved_epsilons(info: CellInfo) -> list[float]:
    """The epsilons a cell's saved file is indexed by (NaN: a minimum-norm attack's own examples)."""
    return [math.nan] if info.kind is AttackKind.MINIMUM_NORM else [float(e) for e in info.epsilons]


def saved_problem(saved: Any, info: CellInfo, records: pd.DataFrame, clean: torch.Tensor | None = None,
                  bounds: tuple[float, float] | None = None) -> str | None:
    """Why `saved` cannot be the saved inputs of the cell `info` with these records, or None."""
    if not isinstance(saved, dict) or not set(KEYS) <= set(saved):
        return "is not a dict of samples, epsilons and adversarials"
    if not all(isinstance(saved[k], torch.Tensor) for k in KEYS):
        return "holds values that are not tensors"
    samples, epsilons, adversarials = (saved[k] for k in KEYS)
    expected = saved_epsilons(info)
    if epsilons.shape != (len(expected),) or not all(
            (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-6)
            for a, b in zip(epsilons.tolist(), expected)):
        return f"holds epsilons {epsilons.tolist()}, but the cell ran at {expected}"
    ids = [int(s) for s in dict.fromkeys(records["sample"])]
    if samples.ndim != 1 or samples.tolist() != ids:
        return "holds other sample ids than the cell's records"
    if adversarials.ndim < 3 or tuple(adversarials.shape[:2]) != (len(expected), len(ids)):
        return f"has shape {tuple(adversarials.shape)}, not [{len(expected)} epsilons, {len(ids)} samples, ...]"
    if not adversarials.is_floating_point() or not torch.isfinite(adversarials).all():
        return "holds non-finite values"
    if clean is None or bounds is None:
        return None
    if tuple(adversarials.shape[2:]) != tuple(clean.shape[1:]):
        return f"holds inputs of shape {tuple(adversarials.shape[2:])}, the data's are {tuple(clean.shape[1:])}"
    for eps, batch in zip(expected, adversarials):
        try:
            verify_adversarials(clean, batch, epsilon=None if math.isnan(eps) else eps, norm=info.norm,
                                bounds=bounds, attack="the file")
        except AttackVerificationError as exc:
            return str(exc).replace("the file returned", "holds").replace("the file left", "leaves")
    return None
