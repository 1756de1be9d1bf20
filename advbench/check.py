"""`advbench check DEFENSE`: a small grid that exercises every attack-failure check.

Run before a large evaluation: the same gradient attack at a small and a box-sized
epsilon, again with four times the steps and two restarts, a gradient-free attack
(finite-difference PGD) and Gaussian noise at the same epsilon, an unbounded
minimum-norm attack, and `autoattack` beside PGD (a PGD more than a point weaker is flagged). The flags of `advbench.trust` then say what to fix first.
"""

from __future__ import annotations

from .config import AttackSpec, DefenseSpec, Grid, validate
from .errors import AdvbenchError

DEFAULT_EPS = {"linf": 0.1, "l2": 1.0}
LARGE_EPS = {"linf": 1.0, "l2": 64.0}  # the whole [0, 1] box; an L2 ball larger than any image's norm


def check_grid(defense: str, *, norm: str = "linf", eps: float | None = None, steps: int = 20,
               dataset: str | None = None, samples: int | None = None, batch_size: int | None = None,
               seed: int | None = None, device: str | None = None, weights: str | None = None,
               sanity: bool | None = None) -> Grid:
    """The check grid for `defense`; options left None keep the check's defaults (60 samples)."""
    if norm not in DEFAULT_EPS:
        raise AdvbenchError(f"check: norm must be linf or l2, got {norm!r}")
    if steps < 1:
        raise AdvbenchError("check: steps must be at least 1")
    eps = DEFAULT_EPS[norm] if eps is None else eps
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
    return validate(grid.with_overrides(dataset=dataset, samples=samples, batch_size=batch_size, seed=seed,
                                        device=device, sanity=sanity))
