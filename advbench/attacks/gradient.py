"""Gradient attacks on our PGD engine: fgsm, fgm, pgd-linf, pgd-l2, mim.

These run on our own engine rather than foolbox's so that every one of them picks
up a defense's adaptive loss (`loss="auto"`), Adam steps and random restarts.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from ..errors import AdvbenchError
from ..norms import parse_norm
from ..registry import register_attack
from .base import Adversarials, AttackTarget, FixedEpsilonAttack
from .losses import pick_loss
from .objectives import build_objective, real_decision
from .engine import LossTrace, Radius
from .pgd import STEP_RULES, pgd


class _GradientAttack(FixedEpsilonAttack):
    """Attacks on the PGD engine: one epsilon per `run`, or all of a cell's epsilons in one
    batched run (`run_epsilons`: the batch stacked once per epsilon, with per-sample radii).

    `batch_epsilons` says when to batch: None (the default) on a GPU, where a step's cost is
    mostly kernel launches, and not on a CPU, where it grows with the batch
    (bench/batched_epsilons.py measured 1.15-1.28x slower there); True or False decides for
    this attack object. Either way the examples are the same up to the float rounding of
    forwards on other batch sizes (beaten samples leave the batch at different times)."""

    batch_epsilons: bool | None = None
    # what the engine reads of every attack on it; an attack without the option keeps these
    steps: int = 1
    restarts: int = 1
    step_rule: str = "sign"

    def _attack(self, target: AttackTarget, x: torch.Tensor, y: torch.Tensor, eps: Radius,
                step: Radius) -> torch.Tensor | Adversarials:
        raise NotImplementedError

    def _step(self, epsilon: float) -> float:
        return epsilon

    def run(self, target: AttackTarget, x: torch.Tensor, y: torch.Tensor, *, epsilon: float,
            ) -> torch.Tensor | Adversarials:
        return self._attack(target, x, y, epsilon, self._step(epsilon))

    def run_epsilons(self, target: AttackTarget, x: torch.Tensor, y: torch.Tensor,
                     epsilons: list[float]) -> list[torch.Tensor | Adversarials] | None:
        """The batch repeated once per epsilon (in order, so that random starts draw the same
        numbers as runs per epsilon), attacked in one pass, split back: the same examples as
        runs per epsilon (up to float rounding). Left to runs per epsilon where that would not hold:
        Adam steps (one step size per batch), restarts (later restarts would draw in another
        order) and stochastic defenses (their noise would be drawn in another order)."""
        batched = x.is_cuda if self.batch_epsilons is None else self.batch_epsilons
        if not batched or self.step_rule == "adam" or self.restarts > 1 \
                or target.stochastic:
            return None
        k, n = len(epsilons), len(x)
        stacked_x = x.repeat(k, *([1] * (x.dim() - 1)))
        radii = torch.tensor(epsilons, device=x.device).repeat_interleave(n)
        steps = torch.tensor([self._step(e) for e in epsilons], device=x.device).repeat_interleave(n)
        result = self._attack(target, stacked_x, y.repeat(k), radii, steps)
        found = result if isinstance(result, Adversarials) else Adversarials(result)
        return [Adversarials(found.points[i * n:(i + 1) * n],
                             {key: value[i * n:(i + 1) * n] for key, value in found.details.items()})
                for i in range(k)]

    def _check(self) -> None:
        if self.steps < 1:
            raise AdvbenchError(f"{type(self).__name__}: steps must be at least 1")
        if self.restarts < 1:
            raise AdvbenchError(f"{type(self).__name__}: restarts must be at least 1")
        if self.step_rule not in STEP_RULES:
            raise AdvbenchError(f"{type(self).__name__}: step-rule must be one of {', '.join(STEP_RULES)}")
        pick_loss(self.loss, None)


@register_attack("pgd-linf", norm="linf",
                 description="PGD in the Linf ball: steps, step-size (0 = 2.5*eps/steps), random start, restarts")
@register_attack("pgd-l2", norm="l2",
                 description="PGD in the L2 ball: steps, step-size (0 = 2.5*eps/steps), random start, restarts")
class PGD(_GradientAttack):
    """Projected gradient descent with random start and restarts (Madry et al. 2018)."""
    derived_defaults: ClassVar[dict[str, str]] = {"step_size": "rel-step-size x eps / steps"}

    def __init__(self, *, norm: str = "linf", steps: int = 40, step_size: float = 0.0, rel_step_size: float = 2.5, random_start: bool = True,
                 restarts: int = 1, loss: str = "auto", step_rule: str = "sign", reject_aware: bool = False) -> None:
        self.norm = parse_norm(norm)
        self.steps, self.step_size, self.rel_step_size = steps, step_size, rel_step_size
        self.random_start, self.restarts, self.loss, self.step_rule = random_start, restarts, loss, step_rule
        self.reject_aware = reject_aware
        self._check()

    def _step(self, epsilon: float) -> float:
        return self.step_size or self.rel_step_size * epsilon / self.steps

    def _attack(self, target: AttackTarget, x: torch.Tensor, y: torch.Tensor, eps: Radius,
                step: Radius) -> Adversarials:
        trace = LossTrace(len(x), x.device)
        objective = build_objective(target, self.loss, reject_aware=self.reject_aware)  # reject-aware: wrong AND accepted
        points = pgd(objective.model, x, y, eps=eps, norm=self.norm, steps=self.steps, step_size=step,
                     loss_fn=objective.loss, bounds=target.bounds, random_init=self.random_start,
                     restarts=self.restarts, step_rule=self.step_rule, prefer_misclassified=objective.success_first,
                     success=objective.success, trace=trace, decided=real_decision(target, self.loss, self.reject_aware))
        return Adversarials(points, trace.details())


@register_attack("fgsm", norm="linf",
                 description="fast gradient sign method (Goodfellow et al. 2015), one Linf step of size eps")
@register_attack("fgm", norm="l2", description="fast gradient method, one L2 step of size eps along the normalised "
                                               "gradient")
class SingleStep(_GradientAttack):
    """One gradient step of size eps (FGSM in Linf, FGM in L2)."""

    def __init__(self, *, norm: str = "linf", loss: str = "auto") -> None:
        self.norm = parse_norm(norm)
        self.loss = loss
        self._check()

    def _attack(self, target: AttackTarget, x: torch.Tensor, y: torch.Tensor, eps: Radius,
                step: Radius) -> torch.Tensor:
        objective = build_objective(target, self.loss, reject_aware=False)
        return pgd(objective.model, x, y, eps=eps, norm=self.norm, steps=1, step_size=step, loss_fn=objective.loss,
                   bounds=target.bounds, random_init=False, prefer_misclassified=objective.success_first,
                   success=objective.success)


@register_attack("mim", norm="linf", description="momentum iterative method (Dong et al. 2018) in the Linf ball")
@register_attack("mim-l2", norm="l2", description="momentum iterative method (Dong et al. 2018) in the L2 ball")
class MIM(_GradientAttack):
    """Momentum iterative method (Dong et al. 2018): L1-normalised gradients accumulated with decay."""
    derived_defaults: ClassVar[dict[str, str]] = {"step_size": "eps / steps"}

    def __init__(self, *, norm: str = "linf", steps: int = 10, step_size: float = 0.0, decay: float = 1.0,
                 loss: str = "auto") -> None:
        self.norm = parse_norm(norm)
        self.steps, self.step_size, self.decay, self.loss = steps, step_size, decay, loss
        self._check()

    def _step(self, epsilon: float) -> float:
        return self.step_size or epsilon / self.steps

    def _attack(self, target: AttackTarget, x: torch.Tensor, y: torch.Tensor, eps: Radius,
                step: Radius) -> torch.Tensor:
        objective = build_objective(target, self.loss, reject_aware=False)
        return pgd(objective.model, x, y, eps=eps, norm=self.norm, steps=self.steps, step_size=step,
                   loss_fn=objective.loss, bounds=target.bounds, random_init=False, momentum=self.decay,
                   success=objective.success, prefer_misclassified=objective.success_first,
                   decided=real_decision(target, self.loss, False))
