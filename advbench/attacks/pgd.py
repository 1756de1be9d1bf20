"""Our batched projected-gradient engine.

Used where foolbox cannot help: a defense-provided loss, Adam steps on the
perturbation (GAT), momentum (MIM) and random restarts that keep, per sample, the
first restart that fooled the model. Plain torch on whole batches, so it is at
least as fast as foolbox's PGD (see bench/pgd_speed.py). The bookkeeping it shares
with the other engines (projection, random starts, best points, loss traces) lives
in `engine`.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..norms import Norm
from .base import Loss
from .engine import BestPoints, LossTrace, Radius, RunTrace, broadcast, project, random_start, steepest_direction


STEP_RULES = ("sign", "adam")


Success = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _misclassified(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return logits.argmax(1) != y


def pgd(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: Radius, norm: Norm, steps: int, step_size: Radius,
    loss_fn: Loss, bounds: tuple[float, float], random_init: bool = True, restarts: int = 1,
    momentum: float = 0.0, step_rule: str = "sign", prefer_misclassified: bool = True,
    success: Success = _misclassified, trace: LossTrace | None = None,
) -> torch.Tensor:
    """Maximise `loss_fn` within the eps-ball and the bounds.

    Per sample, returns the best point seen over all steps and restarts: any
    misclassified point (by `success`) beats any other when `prefer_misclassified`
    (untargeted attacks), then the higher loss wins (the only criterion for a
    defense's own objective, whose success need not mean misclassification).
    `eps` and `step_size` may be per-sample tensors (one batch attacked at several epsilons).
    """
    if step_rule == "adam" and isinstance(step_size, torch.Tensor):
        raise ValueError("pgd: Adam steps need one step size for the batch")

    def restart(number: int, idx: torch.Tensor) -> BestPoints:
        run = BestPoints(x[idx], prefer_misclassified)
        _single_run(model, x[idx], y[idx], run, eps=_rows(eps, idx), norm=norm, steps=steps,
                    step_size=_rows(step_size, idx),
                    loss_fn=loss_fn, bounds=bounds, random_init=random_init, momentum=momentum, step_rule=step_rule,
                    success=success, trace=trace, idx=idx, first_step=number * (steps + 1))
        return run

    return BestPoints(x, prefer_misclassified).on_standing(range(max(restarts, 1)), restart).point


def _rows(value: Radius, idx: torch.Tensor) -> Radius:
    return value[idx] if isinstance(value, torch.Tensor) else value


def _single_run(model: nn.Module, x: torch.Tensor, y: torch.Tensor, best: BestPoints, *, eps: Radius, norm: Norm,
                steps: int, step_size: Radius, loss_fn: Loss, bounds: tuple[float, float], random_init: bool,
                momentum: float, step_rule: str, success: Success, trace: LossTrace | None, idx: torch.Tensor,
                first_step: int) -> None:
    low, high = bounds
    start = random_start(x, eps, norm) if random_init else torch.zeros_like(x)
    delta = ((x + start).clamp(low, high) - x).requires_grad_(True)
    velocity = torch.zeros_like(x)
    step_size = broadcast(step_size, x)
    optimizer = torch.optim.Adam([delta], lr=step_size, maximize=True) if step_rule == "adam" else None
    run_trace: RunTrace | None = None
    for step in range(steps):
        point = x + delta
        logits = model(point)
        loss = loss_fn(logits, y)
        (grad,) = torch.autograd.grad(loss.sum(), delta)
        with torch.no_grad():
            best.offer(point.detach(), success(logits, y), loss.detach())
            if trace is not None:
                if run_trace is None:
                    run_trace = RunTrace(loss, first_step + step)
                else:
                    run_trace.record(loss, first_step + step)
            if optimizer is not None:
                delta.grad = grad
                optimizer.step()
            else:
                if momentum:
                    l1 = grad.abs().flatten(1).sum(1).clamp_min(1e-12).view((-1,) + (1,) * (grad.dim() - 1))
                    velocity = momentum * velocity + grad / l1
                    grad = velocity
                delta += step_size * steepest_direction(grad, norm)
            if norm is Norm.LINF and not isinstance(eps, torch.Tensor):
                delta.clamp_(-eps, eps)
            else:
                delta.copy_(project(delta, eps, norm))
            delta.add_(x).clamp_(low, high).sub_(x)
    with torch.no_grad():
        final = x + delta
        logits = model(final)
        loss = loss_fn(logits, y)
        best.offer(final, success(logits, y), loss)
        if trace is not None:
            if run_trace is None:
                run_trace = RunTrace(loss, first_step + steps)
            else:
                run_trace.record(loss, first_step + steps)
            trace.merge(run_trace, idx)
