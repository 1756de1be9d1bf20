"""APGD (Croce & Hein 2020): PGD whose step size needs no tuning, on our batched engine.

Each run starts at a random point of the ball with step 2*eps and takes momentum steps
(0.75); at checkpoints (after 22% of the budget, then ever closer, never nearer than 6%)
a sample whose loss rose in fewer than 75% of the steps since the last checkpoint, or
whose step was not halved last time and whose best loss has not moved, halves its step
and goes back to its best point. Gradients come from the Objective (the defense's
adaptive gradient model, EOT-averaged, reject-aware when it has a reject option), so
APGD needs no per-defense code. Registered as `apgd-ce`, `apgd-dlr` and `apgd-t`
(targeted DLR over the top classes), each with an `-l2` twin.
"""

from __future__ import annotations

import math

import torch

from ..errors import AdvbenchError
from ..norms import Norm, parse_norm
from ..registry import register_attack
from .base import Adversarials, AttackTarget, FixedEpsilonAttack
from .objectives import Decided, Objective, build_objective, real_decision
from .engine import BestPoints, LossTrace, project, steepest_direction

MOMENTUM = 0.75
INCREASE_FRACTION = 0.75  # rho: below this share of rising steps, the step size is halved


def checkpoints(steps: int) -> list[int]:
    """Iterations after which APGD reconsiders each sample's step size (the paper's p_j)."""
    first, shrink, shortest = max(int(0.22 * steps), 1), max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)
    marks, at, gap = [], first, first
    while at <= steps:
        marks.append(at)
        gap = max(gap - shrink, shortest)
        at += gap
    return marks


def _into_ball(x: torch.Tensor, point: torch.Tensor, eps: torch.Tensor, norm: Norm,
               bounds: tuple[float, float]) -> torch.Tensor:
    return (x + project(point - x, eps, norm)).clamp(*bounds)


def per_sample(eps: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Epsilon as a (n, 1, ...) tensor: one radius per sample (a binary search moves each alone)."""
    view = (-1,) + (1,) * (x.dim() - 1)
    if isinstance(eps, torch.Tensor) and eps.numel() > 1:
        return eps.reshape(view).to(x)
    return torch.full((len(x),) + view[1:], float(eps), device=x.device, dtype=x.dtype)


def _random_start(x: torch.Tensor, eps: torch.Tensor, norm: Norm) -> torch.Tensor:
    if norm is Norm.LINF:
        return (torch.rand_like(x) * 2 - 1) * eps
    return norm.random_in_ball(x, 1.0) * eps


def _evaluate(objective: Objective, point: torch.Tensor, y: torch.Tensor,
              eot_iter: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Outputs, loss and input gradient at `point`, the gradient averaged over `eot_iter` passes."""
    grad = torch.zeros_like(point)
    loss_sum = torch.zeros(len(point), device=point.device)
    out = None
    for _ in range(eot_iter):
        probe = point.clone().requires_grad_(True)
        with torch.enable_grad():
            out = objective.model(probe)
            loss = objective.loss(out, y)
            (g,) = torch.autograd.grad(loss.sum(), probe)
        grad += g
        loss_sum += loss.detach()
    assert out is not None
    return out.detach(), loss_sum / eot_iter, grad / eot_iter


class _SampleStates:
    """Each sample's own APGD state: point, momentum, step size and checkpoint counters. A sample
    that leaves the run keeps its state, which is never read again, so the others take exactly
    the steps they take in the whole batch."""

    def __init__(self, point: torch.Tensor, loss: torch.Tensor, grad: torch.Tensor, eps: torch.Tensor) -> None:
        n = len(point)
        self.view = (-1,) + (1,) * (point.dim() - 1)
        self.point, self.grad, self.step = point, grad, 2.0 * eps.clone()
        self.top_point, self.top_loss, self.top_grad = point.clone(), loss.clone(), grad.clone()
        self.previous_point, self.previous_loss = point.clone(), loss.clone()
        self.rises = torch.zeros(n, device=point.device)
        self.top_at_check = loss.clone()
        self.halved_at_check = torch.ones(n, dtype=torch.bool, device=point.device)
        self.since_check = 0

    @torch.no_grad()
    def move(self, rows: torch.Tensor, first: bool, x: torch.Tensor, eps: torch.Tensor, norm: Norm,
             bounds: tuple[float, float]) -> torch.Tensor:
        """A momentum step of `rows` along the steepest direction, back into the ball."""
        here, xs, radius = self.point[rows], x[rows], eps[rows]
        drift = here - self.previous_point[rows]
        self.previous_point[rows] = here
        weight = 1.0 if first else MOMENTUM
        moved = _into_ball(xs, here + self.step[rows] * steepest_direction(self.grad[rows], norm), radius, norm, bounds)
        here = _into_ball(xs, here + weight * (moved - here) + (1 - weight) * drift, radius, norm, bounds)
        self.point[rows] = here
        return here

    @torch.no_grad()
    def record(self, rows: torch.Tensor, here: torch.Tensor, loss: torch.Tensor, grad: torch.Tensor) -> None:
        """The loss and gradient at `rows`' new points: rising steps counted, best point kept."""
        view = self.view
        self.grad[rows] = grad
        self.rises[rows] += (loss > self.previous_loss[rows]).float()
        self.previous_loss[rows] = loss
        improved = loss > self.top_loss[rows]
        self.top_point[rows] = torch.where(improved.view(view), here, self.top_point[rows])
        self.top_grad[rows] = torch.where(improved.view(view), grad, self.top_grad[rows])
        self.top_loss[rows] = torch.where(improved, loss, self.top_loss[rows])
        self.since_check += 1

    @torch.no_grad()
    def reconsider(self, rows: torch.Tensor) -> None:
        """At a checkpoint: halve the step of an oscillating or stalled sample and send it back
        to its best point."""
        view = self.view
        oscillating = self.rises[rows] < INCREASE_FRACTION * self.since_check
        stalled = ~self.halved_at_check[rows] & (self.top_at_check[rows] >= self.top_loss[rows])
        halve = oscillating | stalled
        self.halved_at_check[rows], self.top_at_check[rows] = halve, self.top_loss[rows]
        self.step[rows] = torch.where(halve.view(view), self.step[rows] / 2, self.step[rows])
        self.point[rows] = torch.where(halve.view(view), self.top_point[rows], self.point[rows])
        self.grad[rows] = torch.where(halve.view(view), self.top_grad[rows], self.grad[rows])
        self.rises.zero_()
        self.since_check = 0


def apgd_run(objective: Objective, x: torch.Tensor, y: torch.Tensor, *, eps: float | torch.Tensor, norm: Norm,
             steps: int, bounds: tuple[float, float], eot_iter: int = 1, trace: LossTrace | None = None,
             idx: torch.Tensor | None = None, first_step: int = 0, decided: Decided | None = None) -> BestPoints:
    """One APGD run from a random start; the best point per sample (successful first).

    With `decided` (the defense's real decision on points), a sample that both the objective
    and `decided` call beaten leaves the run with its best point: every step then attacks only
    the samples still standing (see `_SampleStates`)."""
    eps = per_sample(eps, x)
    point = _into_ball(x, x + _random_start(x, eps, norm), eps, norm, bounds)
    out, loss, grad = _evaluate(objective, point, y, eot_iter)
    best = BestPoints(x, prefer_misclassified=True)
    fooled = objective.success(out, y)
    best.offer(point, fooled, loss)
    rows = torch.arange(len(x), device=x.device)
    if trace is not None:
        trace.record(loss, first_step, _traced(idx, rows))
    state = _SampleStates(point, loss, grad, eps)
    marks = set(checkpoints(steps))
    rows = _still_standing(rows, fooled, point, y, decided)
    for i in range(steps):
        if len(rows) == 0:
            break
        here = state.move(rows, i == 0, x, eps, norm, bounds)
        standing = objective.for_rows(rows)
        out, loss, grad = _evaluate(standing, here, y[rows], eot_iter)
        with torch.no_grad():
            fooled = standing.success(out, y[rows])
            best.offer(here, fooled, loss, rows)
            if trace is not None:
                trace.record(loss, first_step + i + 1, _traced(idx, rows))
            state.record(rows, here, loss, grad)
            if i + 1 in marks:
                state.reconsider(rows)
            rows = _still_standing(rows, fooled, here, y, decided)
    return best


def _traced(idx: torch.Tensor | None, rows: torch.Tensor) -> torch.Tensor:
    """The rows of the whole batch a run's `rows` are (the trace counts whole-batch rows)."""
    return rows if idx is None else idx[rows]


def _still_standing(rows: torch.Tensor, fooled: torch.Tensor, points: torch.Tensor, y: torch.Tensor,
                    decided: Decided | None) -> torch.Tensor:
    """`rows` less those the objective calls beaten at `points` (one per row) and the defense's
    real decision confirms (a surrogate gradient model can be wrong); all of them without `decided`."""
    if decided is None or not fooled.any():
        return rows
    candidates = fooled.nonzero().squeeze(1)
    confirmed = decided(points[candidates], y[rows[candidates]])
    keep = torch.ones(len(rows), dtype=torch.bool, device=rows.device)
    keep[candidates[confirmed]] = False
    return rows[keep]


def apgd(objective: Objective, x: torch.Tensor, y: torch.Tensor, *, eps: float | torch.Tensor, norm: Norm,
         steps: int, bounds: tuple[float, float], restarts: int = 1, eot_iter: int = 1,
         trace: LossTrace | None = None, decided: Decided | None = None) -> BestPoints:
    """APGD with restarts: each restart attacks only the samples not yet beaten (and, with
    `decided`, each step only those still standing: `apgd_run`)."""
    eps = per_sample(eps, x)

    def restart(number: int, idx: torch.Tensor) -> BestPoints:
        return apgd_run(objective, x[idx], y[idx], eps=eps[idx], norm=norm, steps=steps, bounds=bounds,
                        eot_iter=eot_iter, trace=trace, idx=idx, first_step=number * (steps + 1), decided=decided)

    return BestPoints(x, prefer_misclassified=True).on_standing(range(restarts), restart)


def top_other_classes(logits: torch.Tensor, y: torch.Tensor, count: int) -> list[torch.Tensor]:
    """Per sample, the `count` most likely wrong classes, most likely first (APGD-T's targets)."""
    ranked = logits.scatter(1, y[:, None], -math.inf).argsort(dim=1, descending=True)
    return [ranked[:, j] for j in range(min(count, logits.shape[1] - 1))]


def apgd_targeted(objective: Objective, x: torch.Tensor, y: torch.Tensor, *, eps: float, norm: Norm, steps: int,
                  bounds: tuple[float, float], targets: int = 9, restarts: int = 1, eot_iter: int = 1,
                  trace: LossTrace | None = None, decided: Decided | None = None) -> BestPoints:
    """APGD-T: targeted DLR towards each of the top `targets` wrong classes in turn, on the
    samples no earlier target has beaten."""
    with torch.no_grad():
        ranked = top_other_classes(objective.logits(objective.model(x)), y, targets)

    def towards(t: int, idx: torch.Tensor) -> BestPoints:
        return apgd(objective.retarget(ranked[t][idx]), x[idx], y[idx], eps=eps, norm=norm, steps=steps,
                    bounds=bounds, restarts=restarts, eot_iter=eot_iter, decided=decided,
                    trace=trace if t == 0 else None)  # traced: the most likely target

    return BestPoints(x, prefer_misclassified=True).on_standing(range(len(ranked)), towards)


LOSS_NAMES = ("ce", "dlr", "auto")


@register_attack("apgd-ce", norm="linf", loss="ce", description="APGD with cross-entropy (Croce & Hein 2020), Linf")
@register_attack("apgd-ce-l2", norm="l2", loss="ce", description="APGD with cross-entropy, L2")
@register_attack("apgd-dlr", norm="linf", loss="dlr", description="APGD with the DLR loss (scale-invariant), Linf")
@register_attack("apgd-dlr-l2", norm="l2", loss="dlr", description="APGD with the DLR loss, L2")
class APGD(FixedEpsilonAttack):
    """Auto-PGD: step-size schedule with checkpoints, momentum, restarts, per-sample best point;
    reject-aware (misclassified AND accepted) on defenses with a reject option."""
    fast_options = {"steps": 20}

    def __init__(self, *, norm: str = "linf", loss: str = "ce", steps: int = 100, restarts: int = 1,
                 eot_iter: int = 1, reject_aware: bool = True) -> None:
        if loss not in LOSS_NAMES:
            raise AdvbenchError(f"apgd: loss must be one of {', '.join(LOSS_NAMES)}")
        self.norm = parse_norm(norm)
        self.loss, self.steps, self.restarts, self.eot_iter = loss, steps, restarts, eot_iter
        self.reject_aware = reject_aware

    def run(self, target: AttackTarget, x: torch.Tensor, y: torch.Tensor, *, epsilon: float) -> Adversarials:
        objective = build_objective(target, self.loss, reject_aware=self.reject_aware)
        trace = LossTrace(len(x), x.device)
        best = apgd(objective, x, y, eps=epsilon, norm=self.norm, steps=self.steps, bounds=target.bounds,
                    restarts=self.restarts, eot_iter=self.eot_iter, trace=trace,
                    decided=real_decision(target, self.loss, self.reject_aware))
        return Adversarials(best.point, trace.details())


@register_attack("apgd-t", norm="linf", description="targeted APGD with the DLR loss over the top wrong classes, Linf")
@register_attack("apgd-t-l2", norm="l2", description="targeted APGD with the DLR loss over the top wrong classes, L2")
class APGDTargeted(FixedEpsilonAttack):
    """APGD-T: targeted DLR towards each of the `targets` most likely wrong classes."""
    fast_options = {"steps": 20, "targets": 3}

    def __init__(self, *, norm: str = "linf", steps: int = 100, targets: int = 9, restarts: int = 1,
                 eot_iter: int = 1, reject_aware: bool = True) -> None:
        self.norm = parse_norm(norm)
        self.steps, self.targets, self.restarts, self.eot_iter = steps, targets, restarts, eot_iter
        self.reject_aware = reject_aware

    def run(self, target: AttackTarget, x: torch.Tensor, y: torch.Tensor, *, epsilon: float) -> Adversarials:
        objective = build_objective(target, "dlr", reject_aware=self.reject_aware)
        trace = LossTrace(len(x), x.device)
        best = apgd_targeted(objective, x, y, eps=epsilon, norm=self.norm, steps=self.steps, bounds=target.bounds,
                             targets=self.targets, restarts=self.restarts, eot_iter=self.eot_iter, trace=trace,
                             decided=real_decision(target, "dlr", self.reject_aware))
        return Adversarials(best.point, trace.details())
