"""`bsearch-l2`: mean L2 distortion by binary search over c (paper 001 Appendix B, Table 7).

For each c, unconstrained PGD (data box only) maximises max_{i!=y} z(x') - c ||x' - x||^2
(the negative of paper 001 Eq. 16). A c is effective when x' becomes a false positive of
the reject option: misclassified and accepted (reject score <= threshold; for GAT's
generative detector: argmax z != y and max_{i!=y} z > T). The search then tries a larger
c (a smaller perturbation); otherwise a smaller one. The smallest successful perturbation
is returned, and the runner reports its norm like any minimum-norm attack's.
"""

from __future__ import annotations

import torch

from ..errors import AdvbenchError
from ..norms import Norm
from ..registry import register_attack
from .base import AttackTarget, Capability, MinimumNormAttack
from .engine import SmallestSuccess
from .losses import max_other


@register_attack("bsearch-l2", description="binary search over c of -max_{i!=y} z + c||d||^2 (paper 001 App. B) "
                                           "for defenses with a reject option")
class BinarySearchL2(MinimumNormAttack):
    """Defaults are paper 001 Table 7 (MNIST): c in [0, 8] from 0, depth 20, 500 Adam steps of 0.1."""
    fast_options = {"depth": 4, "steps": 30}

    norm = Norm.L2
    requires = Capability.REJECT_OPTION

    def __init__(self, *, initial_const: float = 0.0, lower: float = 0.0, upper: float = 8.0, depth: int = 20,
                 steps: int = 500, step_size: float = 0.1) -> None:
        if not lower <= initial_const <= upper or depth < 1 or steps < 1 or not step_size > 0:
            raise AdvbenchError("bsearch-l2: need lower <= initial-const <= upper, depth and steps >= 1, step-size > 0")
        self.initial_const, self.lower, self.upper = initial_const, lower, upper
        self.depth, self.steps, self.step_size = depth, steps, step_size

    def _perturb(self, target: AttackTarget, x: torch.Tensor, y: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        low, high = target.bounds
        delta = torch.zeros_like(x, requires_grad=True)
        optimizer = torch.optim.Adam([delta], lr=self.step_size, maximize=True)
        for _ in range(self.steps):
            x_adv = (x + delta).clamp(low, high)
            size = (x_adv - x).flatten(1).pow(2).sum(1)
            objective = max_other(target.gradient_model(x_adv), y) - c * size
            optimizer.zero_grad(set_to_none=True)
            objective.sum().backward()
            optimizer.step()
        return (x + delta.detach()).clamp(low, high)

    def false_positive(self, target: AttackTarget, x_adv: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Misclassified and accepted (score at or below the threshold) by the defense's real
        decision. Read from the target's reject score, which any target with a reject option has
        (the joint models `build_objective` needs are built only by the runner)."""
        with torch.no_grad():
            wrong = target.decision_model(x_adv).argmax(1) != y
            accepted = target.reject_score(x_adv) <= target.reject_threshold
        return wrong & accepted

    def run(self, target: AttackTarget, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.search(target, x, y)[0]

    def search(self, target: AttackTarget, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(smallest successful perturbed inputs, largest effective c per sample)."""
        if not self.requires.offered_by(target):
            raise AdvbenchError(f"bsearch-l2 needs {self.requires.needs} and threshold")
        n = len(x)
        lower = torch.full((n,), self.lower, device=x.device)
        upper = torch.full((n,), self.upper, device=x.device)
        c = torch.full((n,), self.initial_const, device=x.device)
        smallest = SmallestSuccess(x)
        for _ in range(self.depth):
            x_adv = self._perturb(target, x, y, c)
            success = self.false_positive(target, x_adv, y)
            size = Norm.L2.of(x_adv - x)
            smallest.offer(x_adv, size, success)
            lower = torch.where(success, c, lower)   # effective: try a larger c (smaller perturbation)
            upper = torch.where(success, upper, c)
            c = (lower + upper) / 2
        return smallest.points, lower
