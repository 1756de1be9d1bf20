"""Minimum-norm attacks that converge on stochastic defenses: FMN and an APGD binary search.

`fmn` / `fmn-linf` (Pintor et al. 2021): normalised gradient steps on the logit margin
inside a norm ball whose radius adapts per sample: while no adversarial is found it grows
to the first-order distance to the boundary (and at least by gamma per step, as the data box
can stall that linear guess), then shrinks below the smallest adversarial
found (by a factor gamma that, like the step size, decays on a cosine schedule). Success
is read from the gradient model, which for stochastic defenses averages logits over the
EOT samples; the final examples are then confirmed on the defense's EOT-averaged real
decision (ten fresh draws for a stochastic defense), and a candidate they do not all call
adversarial is pushed outwards (x + s * delta, s up to 8) until they do, so that the runner's
re-prediction agrees.

`apgd-bs` / `apgd-bs-linf`: per-sample binary search over epsilon with APGD-CE at each
trial, an independent cross-check of FMN's norms (slower: one APGD run per depth).
"""

from __future__ import annotations

from typing import ClassVar

import math

import torch

from ..norms import Norm, parse_norm
from ..registry import register_attack
from .apgd import apgd
from .base import Adversarials, AttackTarget, MinimumNormAttack
from .objectives import Objective, build_objective
from .engine import SmallestSuccess, project

Tensor = torch.Tensor
OUTWARD_SCALES = (1.05, 1.1, 1.2, 1.35, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0, 6.0, 8.0)
CONFIRM_DRAWS = 10  # fresh decisions a stochastic defense's example must pass (3: 7-25% flipped back)


def _view(t: Tensor, like: Tensor) -> Tensor:
    return t.view((-1,) + (1,) * (like.dim() - 1))


def fmn(objective: Objective, x: Tensor, y: Tensor, *, norm: Norm, steps: int, bounds: tuple[float, float],
        alpha_init: float = 1.0, alpha_final: float | None = None, gamma_init: float = 0.05,
        gamma_final: float = 0.001) -> tuple[Tensor, Tensor]:
    """Smallest adversarial found per sample (the input where none) and its norm (inf where none)."""
    low, high = bounds
    alpha_final = alpha_init / 100 if alpha_final is None else alpha_final
    n = len(x)
    delta = torch.zeros_like(x)
    radius = torch.full((n,), math.inf, device=x.device)
    smallest = SmallestSuccess(x)
    found = torch.zeros(n, dtype=torch.bool, device=x.device)
    largest = Norm.LINF.of(torch.maximum(x - low, high - x)) if norm is Norm.LINF else \
        Norm.L2.of(torch.maximum(x - low, high - x))
    for i in range(steps):
        cosine = (1 + math.cos(math.pi * i / steps)) / 2
        gamma = gamma_final + (gamma_init - gamma_final) * cosine
        alpha = alpha_final + (alpha_init - alpha_final) * cosine
        probe = (x + delta).requires_grad_(True)
        with torch.enable_grad():
            out = objective.model(probe)
            margin = -objective.loss(out, y)  # positive while the sample stands
            (grad,) = torch.autograd.grad(margin.sum(), probe)
        with torch.no_grad():
            size = norm.of(delta)
            beaten = objective.success(out, y)
            smallest.offer(probe.detach(), size, beaten)
            found |= beaten
            to_boundary = margin.abs() / norm.dual_of(grad).clamp_min(1e-12)
            # before the first adversarial: the first-order distance to the boundary, but never
            # less than the last radius grown by gamma (the data box can stall the linear guess)
            searching = torch.where(torch.isinf(radius), size + to_boundary,
                                    torch.maximum(size + to_boundary, radius * (1 + gamma)))
            radius = torch.where(beaten, torch.minimum(radius, size * (1 - gamma)),
                                 torch.where(found, radius * (1 + gamma), searching))
            radius = torch.minimum(radius, largest)
            step = grad / _view(grad.flatten(1).norm(dim=1).clamp_min(1e-12), grad)
            delta = delta - alpha * step
            delta = project(delta, _view(radius, delta), norm)
            delta = (x + delta).clamp(low, high) - x
    return smallest.points, smallest.sizes


def confirm_outwards(decide: Objective, x: Tensor, y: Tensor, points: Tensor, bounds: tuple[float, float],
                     draws: int = 1) -> Tensor:
    """Where the real (EOT-averaged) decision does not confirm a found adversarial on each of
    `draws` fresh evaluations (several for stochastic defenses: a point right at the boundary
    passes one draw by chance), try it scaled outwards from x; keep the first confirmed scale."""
    low, high = bounds

    def holds(points: Tensor, labels: Tensor) -> Tensor:
        passing = torch.ones(len(points), dtype=torch.bool, device=points.device)
        for _ in range(draws):  # sequential: a point leaves at its first failed draw
            rows = passing.nonzero().squeeze(1)
            if len(rows) == 0:
                break
            passing[rows] = decide.success(decide.model(points[rows]), labels[rows])
        return passing

    with torch.no_grad():
        moved = (points != x).flatten(1).any(1)
        confirmed = holds(points, y) | ~moved
        result = points.clone()
        for scale in OUTWARD_SCALES:
            pending = ~confirmed
            if not pending.any():
                break
            trial = (x[pending] + scale * (points[pending] - x[pending])).clamp(low, high)
            ok = holds(trial, y[pending])
            rows = pending.nonzero().squeeze(1)[ok]
            result[rows] = trial[ok]
            confirmed[rows] = True
    return result


@register_attack("fmn", norm="l2", description="fast minimum-norm attack (Pintor et al. 2021), L2; success on the "
                                               "EOT-averaged decision")
@register_attack("fmn-linf", norm="linf", description="fast minimum-norm attack, Linf")
class FastMinimumNorm(MinimumNormAttack):
    """FMN: adaptive-radius normalised gradient descent; one run gives accuracy at every epsilon."""
    fast_options = {"steps": 30}

    def __init__(self, *, norm: str = "l2", steps: int = 100, alpha_init: float = 1.0, gamma_init: float = 0.05,
                 restarts: int = 1, reject_aware: bool = False) -> None:
        self.norm = parse_norm(norm)
        self.steps, self.alpha_init, self.gamma_init = steps, alpha_init, gamma_init
        self.restarts, self.reject_aware = restarts, reject_aware

    def run(self, target: AttackTarget, x: Tensor, y: Tensor) -> Adversarials:  # type: ignore[override]
        objective = build_objective(target, "margin", reject_aware=self.reject_aware)
        smallest = SmallestSuccess(x)
        for restart in range(self.restarts):  # later restarts take half the step: a finer search
            points, sizes = fmn(objective, x, y, norm=self.norm, steps=self.steps, bounds=target.bounds,
                                alpha_init=self.alpha_init / 2 ** restart, gamma_init=self.gamma_init)
            smallest.offer(points, sizes, torch.isfinite(sizes))  # inf: nothing found
        decide = build_objective(target, "margin", reject_aware=self.reject_aware, decision=True)
        return Adversarials(confirm_outwards(decide, x, y, smallest.points, target.bounds, CONFIRM_DRAWS if target.stochastic
                                             else 1))


@register_attack("apgd-bs", norm="l2", description="binary search over epsilon with APGD-CE at each trial, L2 "
                                                   "(a cross-check of FMN's norms)")
@register_attack("apgd-bs-linf", norm="linf", description="binary search over epsilon with APGD-CE, Linf")
class APGDBinarySearch(MinimumNormAttack):
    """Per-sample bisection on epsilon in [0, upper]: APGD succeeds -> smaller, fails -> larger."""
    fast_options = {"steps": 10, "depth": 5}
    derived_defaults: ClassVar[dict[str, str]] = {"upper": "the data box's diameter in the norm"}

    def __init__(self, *, norm: str = "l2", steps: int = 30, depth: int = 10, upper: float = 0.0,
                 reject_aware: bool = False) -> None:
        self.norm = parse_norm(norm)
        self.steps, self.depth, self.upper, self.reject_aware = steps, depth, upper, reject_aware

    def run(self, target: AttackTarget, x: Tensor, y: Tensor) -> Adversarials:  # type: ignore[override]
        objective = build_objective(target, "ce", reject_aware=self.reject_aware)
        low_b, high_b = target.bounds
        top = self.upper or float(Norm.L2.of(torch.full_like(x[:1], high_b - low_b))) if self.norm is Norm.L2 \
            else (self.upper or high_b - low_b)
        lower = torch.zeros(len(x), device=x.device)
        upper = torch.full((len(x),), top, device=x.device)
        smallest = SmallestSuccess(x)
        for _ in range(self.depth):
            eps = (lower + upper) / 2
            run = apgd(objective, x, y, eps=_view(eps, x), norm=self.norm, steps=self.steps, bounds=target.bounds)
            sizes = self.norm.of(run.point - x)
            smallest.offer(run.point, sizes, run.fooled)
            upper = torch.where(run.fooled, eps, upper)
            lower = torch.where(run.fooled, lower, eps)
        decide = build_objective(target, "ce", reject_aware=self.reject_aware, decision=True)
        return Adversarials(confirm_outwards(decide, x, y, smallest.points, target.bounds, CONFIRM_DRAWS if target.stochastic
                                             else 1))
