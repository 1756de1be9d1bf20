"""FAB-T (Croce & Hein 2020): targeted Fast Adaptive Boundary attack, minimum-norm.

Our own batched implementation rather than a wrapper of torchattacks' FAB, so that it
attacks the defense's adaptive gradient model (EOT-averaged), uses the reject-aware
boundary on reject-option defenses, and needs no extra dependency (torchattacks pins an
old `requests`). Each step linearises the boundary between the true class y and the
target t (f = z_t - z_y, or min(f, T - s) reject-aware) at the current point, projects
both the current point and the original input onto that hyperplane (Linf or L2, moving
only coordinates that the data bounds let move), takes the convex combination that
favours the original input (alpha <= alpha_max), overshoots by eta, and after a success
steps back towards the input by beta. The projection handles the box by freezing
saturated coordinates instead of solving the exact box-constrained problem of the paper;
the cross-check in the tests compares it with torchattacks' FAB.
"""

from __future__ import annotations

import math

import torch

from ..norms import Norm, parse_norm
from ..registry import register_attack
from .apgd import top_other_classes
from .base import Adversarials, AttackTarget, MinimumNormAttack
from .engine import SmallestSuccess
from .objectives import Objective, build_objective

Tensor = torch.Tensor


def _boundary(objective: Objective, point: Tensor, y: Tensor, targets: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """f (positive: beaten towards t), its input gradient and the success flags at `point`."""
    probe = point.clone().requires_grad_(True)
    with torch.enable_grad():
        out = objective.model(probe)
        logits = objective.logits(out)
        f = logits.gather(1, targets[:, None]).squeeze(1) - logits.gather(1, y[:, None]).squeeze(1)
        if objective.threshold is not None:
            f = torch.minimum(f, objective.threshold - out[:, objective.classes])
        (grad,) = torch.autograd.grad(f.sum(), probe)
    # autograd may hand back an expanded tensor (a model that sums its pixels): the attack writes
    # into rows of it, so it must own its memory
    return f.detach(), grad.contiguous(), objective.success(out.detach(), y)


def _to_hyperplane(start: Tensor, f: Tensor, grad: Tensor, norm: Norm, bounds: tuple[float, float]) -> Tensor:
    """The smallest step (in `norm`) from `start` that the linear model f + grad.d says reaches
    f = 0, using only coordinates that can move in the needed direction within the bounds."""
    low, high = bounds
    view = (-1,) + (1,) * (start.dim() - 1)
    direction = grad * torch.sign(-f).view(view)  # moving along it raises f when f < 0
    free = ((direction > 0) & (start < high)) | ((direction < 0) & (start > low))
    g = grad * free
    if norm is Norm.LINF:
        size = g.abs().flatten(1).sum(1).clamp_min(1e-12)
        return (-f / size).view(view) * g.sign()
    size = (g ** 2).flatten(1).sum(1).clamp_min(1e-12)
    return (-f / size).view(view) * g


def _restart_point(x: Tensor, best_norm: Tensor, eps: float | None, norm: Norm,
                   bounds: tuple[float, float]) -> Tensor:
    """A random start at half the smaller of eps and the best norm found so far (as the paper)."""
    limit = eps if eps is not None else math.inf
    radius = torch.where(torch.isfinite(best_norm), best_norm.clamp(max=limit),
                         torch.full_like(best_norm, limit if eps is not None else 0.1))
    direction = torch.randn_like(x)
    direction = direction / norm.of(direction).clamp_min(1e-12).view((-1,) + (1,) * (x.dim() - 1))
    return (x + 0.5 * radius.view((-1,) + (1,) * (x.dim() - 1)) * direction).clamp(*bounds)


def fab_targeted(objective: Objective, x: Tensor, y: Tensor, *, norm: Norm, steps: int, bounds: tuple[float, float],
                 targets: int = 9, restarts: int = 1, eps: float | None = None, alpha_max: float = 0.1,
                 eta: float = 1.05, beta: float = 0.9) -> tuple[Tensor, Tensor]:
    """Per sample the smallest adversarial found over the top `targets` wrong classes
    (restarts after the first start at random points within `eps` when given), and its norm
    (inf where none was found). With `eps`, each target attacks only the samples no earlier one
    beat within eps (as the original AutoAttack's FAB-T)."""
    low, high = bounds
    view = (-1,) + (1,) * (x.dim() - 1)
    with torch.no_grad():
        ranked = top_other_classes(objective.logits(objective.model(x)), y, targets)
    smallest = SmallestSuccess(x)
    for classes in ranked:
        for restart in range(restarts):
            # within eps (AutoAttack's use), a sample beaten inside the ball needs no other target
            rows = (torch.arange(len(x), device=x.device) if eps is None
                    else (~(smallest.sizes <= eps)).nonzero().squeeze(1))
            if len(rows) == 0:
                break
            start = x.clone() if restart == 0 else _restart_point(x, smallest.sizes, eps, norm, bounds)  # whole-batch draws
            xs, ys, targets_of = x[rows], y[rows], classes[rows]
            point = start[rows]
            f, grad, _ = _boundary(objective, point, ys, targets_of)
            for _ in range(steps):
                with torch.no_grad():
                    from_point = _to_hyperplane(point, f, grad, norm, bounds)
                    f_origin = f + (grad * (xs - point)).flatten(1).sum(1)
                    from_origin = _to_hyperplane(xs, f_origin, grad, norm, bounds)
                    d_point, d_origin = norm.of(from_point), norm.of(from_origin)
                    alpha = (d_point / (d_point + d_origin).clamp_min(1e-12)).clamp(0, alpha_max).view(view)
                    point = ((1 - alpha) * (point + eta * from_point) + alpha * (xs + eta * from_origin)).clamp(low, high)
                f, grad, beaten = _boundary(objective, point, ys, targets_of)  # also the next step's linearisation
                with torch.no_grad():
                    smallest.offer(point, norm.of(point - xs), beaten, rows)
                    back = beaten.nonzero().squeeze(1)
                    point[back] = (1 - beta) * xs[back] + beta * point[back]  # step back towards the input
                if len(back):  # and re-linearise only there
                    f[back], grad[back], _ = _boundary(objective, point[back], ys[back], targets_of[back])
    return smallest.points, smallest.sizes


@register_attack("fab-t", norm="linf", description="FAB-T (Croce & Hein 2020): targeted minimum-norm boundary attack, "
                                                   "Linf")
@register_attack("fab-t-l2", norm="l2", description="FAB-T: targeted minimum-norm boundary attack, L2")
class FABTargeted(MinimumNormAttack):
    """Minimum-norm FAB-T: accuracy at every epsilon from one run."""
    fast_options = {"steps": 20, "targets": 3}

    def __init__(self, *, norm: str = "linf", steps: int = 100, targets: int = 9, restarts: int = 1,
                 reject_aware: bool = True) -> None:
        self.norm = parse_norm(norm)
        self.steps, self.targets, self.restarts, self.reject_aware = steps, targets, restarts, reject_aware

    def run(self, target: AttackTarget, x: Tensor, y: Tensor) -> Adversarials:  # type: ignore[override]
        objective = build_objective(target, "margin", reject_aware=self.reject_aware)
        points, _ = fab_targeted(objective, x, y, norm=self.norm, steps=self.steps, bounds=target.bounds,
                                 targets=self.targets, restarts=self.restarts)
        return Adversarials(points)


def fab_within(objective: Objective, x: Tensor, y: Tensor, *, eps: float, norm: Norm, steps: int,
               bounds: tuple[float, float], targets: int, restarts: int = 1) -> tuple[Tensor, Tensor]:
    """FAB-T as a fixed-epsilon attack (AutoAttack's use): its points where their norm is within
    eps, the input elsewhere; and which samples it beat."""
    points, sizes = fab_targeted(objective, x, y, norm=norm, steps=steps, bounds=bounds, targets=targets,
                                 restarts=restarts, eps=eps)
    inside = sizes <= eps
    return torch.where(inside.view((-1,) + (1,) * (x.dim() - 1)), points, x), inside

