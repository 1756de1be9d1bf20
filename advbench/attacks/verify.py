"""Independent checks on every adversarial example an attack returns.

An attack that leaves its epsilon ball would make a defense look weak; one that
returns garbage silently would make it look robust. The runner calls this on every
batch, whoever wrote the attack.
"""

from __future__ import annotations

import torch

from ..errors import AttackVerificationError
from ..norms import BALL_TOLERANCE, Norm

BOUNDS_TOLERANCE = 1e-6


def verify_adversarials(x: torch.Tensor, adversarial: torch.Tensor, *, epsilon: float | None, norm: Norm,
                        bounds: tuple[float, float], attack: str) -> None:
    """Raise AttackVerificationError unless every example is finite, in bounds and (for a
    fixed-epsilon attack) within `epsilon` in `norm`, up to a small float tolerance."""
    if adversarial.shape != x.shape:
        raise AttackVerificationError(f"{attack} returned shape {tuple(adversarial.shape)} for inputs {tuple(x.shape)}")
    if not torch.isfinite(adversarial).all():
        raise AttackVerificationError(f"{attack} returned non-finite values")
    low, high = bounds
    below, above = adversarial.min().item(), adversarial.max().item()
    if below < low - BOUNDS_TOLERANCE or above > high + BOUNDS_TOLERANCE:
        raise AttackVerificationError(
            f"{attack} left the data bounds [{low:g}, {high:g}]: values range over [{below:.6g}, {above:.6g}]"
        )
    if epsilon is not None:
        sizes = norm.of(adversarial - x)
        worst = sizes.max().item()
        if worst > epsilon + BALL_TOLERANCE:
            count = int((sizes > epsilon + BALL_TOLERANCE).sum())
            raise AttackVerificationError(
                f"{attack} left its {norm} ball: {count} example(s) with norm up to {worst:.6g} > eps {epsilon:g}"
            )
