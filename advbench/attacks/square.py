"""Square attack (Andriushchenko et al. 2020): random search with square-shaped updates.

Score-based: it reads the defense's real outputs (EOT-averaged for stochastic defenses,
reject score included for reject-option defenses) and never its gradients, so a model
that hides or falsifies its gradients cannot fool it. Each iteration proposes one
change of a random square window (its side shrinks on the paper's schedule) and keeps
it for the samples whose objective improved; samples already beaten stop querying.
Per-sample query counts go to the records.
"""

from __future__ import annotations

import math

import torch

from ..norms import Norm, parse_norm
from ..registry import register_attack
from .base import Adversarials, AttackTarget, FixedEpsilonAttack
from .objectives import Objective, build_objective

# (fraction of the budget spent, divisor of p_init): the square's area shrinks as the search goes on
SCHEDULE = ((0.001, 1), (0.005, 2), (0.02, 4), (0.05, 8), (0.1, 16), (0.2, 32), (0.4, 64), (0.6, 128),
            (0.8, 256), (math.inf, 512))


def square_fraction(p_init: float, iteration: int, budget: int) -> float:
    """Fraction of the pixels the square covers at this iteration."""
    progress = iteration / max(budget, 1)
    for limit, divisor in SCHEDULE:
        if progress <= limit:
            return p_init / divisor
    return p_init / 512  # pragma: no cover


def _random_sign(shape: tuple[int, ...], device: torch.device, generator: torch.Generator | None = None) -> torch.Tensor:
    return torch.randint(0, 2, shape, device=device, generator=generator).float() * 2 - 1


def _bump(side: int, device: torch.device) -> torch.Tensor:
    """The paper's L2 update: nested squares of decaying weight, split into halves of opposite sign,
    unit L2 norm."""
    half = max(side // 2, 1)
    block = torch.zeros(side, side, device=device)
    for part, rows in enumerate((slice(0, half), slice(half, side))):
        height = len(range(side)[rows])
        if height == 0:
            continue
        patch = torch.zeros(height, side, device=device)
        centre_r, centre_c = height // 2, side // 2
        for ring in range(max(height, side)):
            patch[max(centre_r - ring, 0):centre_r + ring + 1, max(centre_c - ring, 0):centre_c + ring + 1] += \
                1.0 / (ring + 1) ** 2
        block[rows] = patch * (1 if part == 0 else -1)
    if torch.rand(()) < 0.5:
        block = block.t()
    return block / block.norm().clamp_min(1e-12)


def square_attack(objective: Objective, x: torch.Tensor, y: torch.Tensor, *, eps: float, norm: Norm,
                  queries: int, bounds: tuple[float, float], p_init: float = 0.8) -> tuple[torch.Tensor, torch.Tensor]:
    """Adversarial points (within eps and bounds) and per-sample query counts."""
    if x.dim() != 4:  # flat inputs: search on a 1 x 1 x d "image"
        points, used = square_attack(objective, x.view(len(x), 1, 1, -1), y, eps=eps, norm=norm, queries=queries,
                                     bounds=bounds, p_init=p_init)
        return points.view_as(x), used
    low, high = bounds
    n, channels, height, width = x.shape
    if norm is Norm.LINF:
        start = eps * _random_sign((n, channels, 1, width), x.device)  # vertical stripes
    else:
        start = _random_sign((n, channels, 1, width), x.device).expand(n, channels, height, width)
        start = start * eps / Norm.L2.of(start).clamp_min(1e-12).view(-1, 1, 1, 1)
    best = (x + start).clamp(low, high)
    with torch.no_grad():
        out = objective.model(best)
    loss, beaten = objective.loss(out, y), objective.success(out, y)
    used = torch.ones(n, device=x.device)
    side_limit = max(min(height, width) - 1, 1)
    for iteration in range(1, queries):
        idx = (~beaten).nonzero().squeeze(1)
        if len(idx) == 0:
            break
        fraction = square_fraction(p_init, iteration, queries)
        side = min(max(int(round(math.sqrt(fraction * height * width))), 1), side_limit)
        top = int(torch.randint(0, height - side + 1, ()))
        left = int(torch.randint(0, width - side + 1, ()))
        window = (slice(None), slice(None), slice(top, top + side), slice(left, left + side))
        xs, delta = x[idx], best[idx] - x[idx]
        candidate = delta.clone()
        if norm is Norm.LINF:
            candidate[window] = eps * _random_sign((len(idx), channels, 1, 1), x.device)
        else:
            top2 = int(torch.randint(0, height - side + 1, ()))
            left2 = int(torch.randint(0, width - side + 1, ()))
            other = (slice(None), slice(None), slice(top2, top2 + side), slice(left2, left2 + side))
            candidate[window] = 0
            candidate[other] = 0
            room = (eps ** 2 - Norm.L2.of(candidate) ** 2).clamp_min(0).sqrt().view(-1, 1, 1, 1)
            signs = _random_sign((len(idx), channels, 1, 1), x.device) / math.sqrt(channels)
            candidate[window] = signs * _bump(side, x.device) * room
        proposal = (xs + candidate).clamp(low, high)
        with torch.no_grad():
            out = objective.model(proposal)
        new_loss, new_beaten = objective.loss(out, y[idx]), objective.success(out, y[idx])
        used[idx] += 1
        better = (new_loss > loss[idx]) | (new_beaten & ~beaten[idx])
        rows = idx[better]
        best[rows] = proposal[better]
        loss[rows] = new_loss[better]
        beaten[rows] = new_beaten[better]
    return best, used


@register_attack("square", norm="linf", description="Square attack (Andriushchenko et al. 2020): score-based random "
                                                    "search, Linf; --opt queries=N")
@register_attack("square-l2", norm="l2", description="Square attack, L2 (score-based random search)")
class Square(FixedEpsilonAttack):
    """Score-based random search on the defense's real outputs (margin loss; reject-aware on
    defenses with a reject option); immune to masked gradients."""
    fast_options = {"queries": 300}

    gradient_based = False
    score_based = True

    def __init__(self, *, norm: str = "linf", queries: int = 5000, p_init: float = 0.8,
                 reject_aware: bool = True) -> None:
        self.norm = parse_norm(norm)
        self.queries, self.p_init, self.reject_aware = queries, p_init, reject_aware

    def run(self, target: AttackTarget, x: torch.Tensor, y: torch.Tensor, *, epsilon: float) -> Adversarials:
        objective = build_objective(target, "margin", reject_aware=self.reject_aware, decision=True)
        points, used = square_attack(objective, x, y, eps=epsilon, norm=self.norm, queries=self.queries,
                                     bounds=target.bounds, p_init=self.p_init)
        return Adversarials(points, {"queries": (used * target.eot).cpu()})
