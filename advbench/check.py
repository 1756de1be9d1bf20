"""`advbench check DEFENSE`: a small grid that exercises every attack-failure check.

Run before a large evaluation: the same gradient attack at a small and a box-sized
epsilon, again with four times the steps and two restarts, a gradient-free attack
(finite-difference PGD) and Gaussian noise at the same epsilon, an unbounded
minimum-norm attack, and `autoattack` beside PGD (a PGD more than a point weaker is flagged). The flags of `advbench.trust` then say what to fix first.
"""

from __future__ import annotations

from typing import Any

from .config import DATASET_EPSILONS, AttackSpec, DefenseSpec, Grid, default_epsilons, validate
from .errors import AdvbenchError
from .norms import parse_norm

DEFAULT_EPS = {"linf": 0.1, "l2": 1.0}
LARGE_EPS = {"linf": 1.0, "l2": 64.0}  # the whole [0, 1] box; an L2 ball larger than any image's norm


def check_grid(defense: str, *, norm: str = "linf", eps: float | None = None, steps: int = 20,
               weights: str | None = None, **overrides: Any) -> Grid:
    """The check grid for `defense`; `overrides` are grid settings (dataset, samples, ...), and
    ones left None keep the check's defaults (60 samples, the dataset's epsilon)."""
    if norm not in DEFAULT_EPS:
        raise AdvbenchError(f"check: norm must be linf or l2, got {norm!r}")
    if steps < 1:
        raise AdvbenchError("check: steps must be at least 1")
    dataset = overrides.get("dataset") or "digits"
    if eps is None:
        eps = DEFAULT_EPS[norm] if dataset not in DATASET_EPSILONS else default_epsilons(dataset, parse_norm(norm))[-1]
    suffix = "" if norm == "linf" else "-l2"
    pgd = f"pgd-{norm}"
    attacks = (
        AttackSpec(pgd, (eps, LARGE_EPS[norm]), (("steps", steps),), label="pgd"),
        AttackSpec(pgd, (eps,), (("restarts", 2), ("steps", 4 * steps)), label="pgd-more"),
        AttackSpec(f"pgd-est{suffix}", (eps,), (("samples", 20), ("steps", steps)), label="pgd-est"),
        AttackSpec("noise", (eps,), (("norm", norm),), label="noise"),
        AttackSpec("deepfool-l2" if norm == "l2" else "deepfool-linf", (eps,), (), label="deepfool"),
        AttackSpec("autoattack", (eps,), (("norm", norm),), label="autoattack"),
    )
    grid = Grid((DefenseSpec(defense, weights),), attacks, samples=60, batch_size=60)
    return validate(grid.with_overrides(**overrides))
