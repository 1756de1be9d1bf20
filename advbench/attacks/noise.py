"""`noise`: additive Gaussian noise of growing standard deviation (a gradient-free sanity baseline)."""

from __future__ import annotations

import torch

from ..errors import AdvbenchError
from ..norms import Norm, parse_norm
from ..registry import register_attack
from .base import AttackTarget, MinimumNormAttack
from .engine import SmallestSuccess


@register_attack("noise", description="additive Gaussian noise of growing std; smallest misclassifying draw (minimum norm)")
class GaussianNoise(MinimumNormAttack):
    """For each std on a linear grid up to `max_std`, draw `repeats` noise images and keep,
    per sample, the smallest-norm draw that the defense misclassifies."""
    fast_options = {"levels": 5, "repeats": 2}

    gradient_based = False

    def __init__(self, *, norm: str = "l2", levels: int = 20, repeats: int = 10, max_std: float = 1.0) -> None:
        if levels < 1 or repeats < 1 or not max_std > 0:
            raise AdvbenchError("noise: levels and repeats must be at least 1 and max-std positive")
        self.norm = parse_norm(norm)  # type: ignore[assignment]
        self.levels, self.repeats, self.max_std = levels, repeats, max_std

    def hyperparameters(self) -> dict:
        return {**super().hyperparameters(), "norm": self.norm.value}

    @torch.no_grad()
    def run(self, target: AttackTarget, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        low, high = target.bounds
        smallest = SmallestSuccess(x)
        for level in range(1, self.levels + 1):
            std = self.max_std * level / self.levels
            for _ in range(self.repeats):
                candidate = (x + std * torch.randn_like(x)).clamp(low, high)
                wrong = target.decision_model(candidate).argmax(1) != y
                size = Norm(self.norm).of(candidate - x)
                smallest.offer(candidate, size, wrong)
        return smallest.points
