"""Names of zoo entries, built in one place (the zoo, the planner, the sweep, the sanity
attacks and the pgn attack all ask here)."""

from __future__ import annotations

from typing import Any


def default_name(defense: str, dataset: str, options: dict[str, Any] | None = None, seed: int = 0) -> str:
    """The one builder of zoo entry names: `cnn-digits`, `pgd-at-digits-eps=0.5-norm=l2`,
    `cnn-digits-seed1` (training options sorted, as plan_defense and the sweep write them)."""
    suffix = "".join(f"-{k.replace('_', '-')}={v}" for k, v in sorted((options or {}).items()))
    return f"{defense}-{dataset}{suffix}" + (f"-seed{seed}" if seed else "")
