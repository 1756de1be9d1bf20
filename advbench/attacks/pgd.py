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
from .objectives import Decided
from .engine import BestPoints, LossTrace, Radius, RunTrace, broadcast, project, random_start, steepest_direction


STEP_RULES = ("sign", "adam")


Success = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (outputs, labels) -> beaten


def _misclassified(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return logits.argmax(1) != y


def pgd(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: Radius, norm: Norm, steps: int, step_size: Radius,
    loss_fn: Loss, bounds: tuple[float, float], random_init: bool = True, restarts: int = 1,
    momentum: float = 0.0, step_rule: str = "sign", prefer_misclassified: bool = True,
    success: Success = _misclassified, trace: LossTrace | None = None, decided: Decided | None = None,
) -> torch.Tensor:
    """Maximise `loss_fn` within the eps-ball and the bounds.

    Per sample, returns the best point seen over all steps and restarts: any
    misclassified point (by `success`) beats any other when `prefer_misclassified`
    (untargeted attacks), then the higher loss wins (the only criterion for a
    defense's own objective, whose success need not mean misclassification).
    `eps` and `step_size` may be per-sample tensors (one batch attacked at several epsilons).
    With `decided` (the defense's real decision on points; sign or momentum steps of an
    untargeted attack), a sample that both `success` and `decided` call beaten leaves the run:
    its best point is kept and the others take the same steps as in the whole batch.
    """
    if step_rule == "adam" and isinstance(step_size, torch.Tensor):
        raise ValueError("pgd: Adam steps need one step size for the batch")

    def restart(number: int, idx: torch.Tensor) -> BestPoints:
        run = BestPoints(x[idx], prefer_misclassified)
        if decided is not None and prefer_misclassified and step_rule == "sign":
            _active_run(model, x[idx], y[idx], run, eps=_rows(eps, idx), norm=norm, steps=steps,
                        step_size=_rows(step_size, idx), loss_fn=loss_fn, bounds=bounds, random_init=random_init,
                        momentum=momentum, success=success, decided=decided, trace=trace, idx=idx,
                        first_step=number * (steps + 1))
            return run
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


def _active_run(model: nn.Module, x: torch.Tensor, y: torch.Tensor, best: BestPoints, *, eps: Radius, norm: Norm,
                steps: int, step_size: Radius, loss_fn: Loss, bounds: tuple[float, float], random_init: bool,
                momentum: float, success: Success, decided: Decided, trace: LossTrace | None, idx: torch.Tensor,
                first_step: int) -> None:
    """`_single_run` on the samples still standing: each step attacks only the rows neither the
    surrogate (`success`) nor the real decision (`decided`) has seen beaten. Per row the same
    arithmetic as the whole batch, so a sample's path does not depend on who else is left."""
    low, high = bounds
    start = random_start(x, eps, norm) if random_init else torch.zeros_like(x)
    delta = (x + start).clamp(low, high) - x
    velocity = torch.zeros_like(x)
    step_size = broadcast(step_size, x)
    eps_b = broadcast(eps, x)
    active = torch.arange(len(x), device=x.device)
    run_trace: RunTrace | None = None
    for step in range(steps + 1):  # the last pass only evaluates the final points
        if len(active) == 0:
            break
        xa, ya = x[active], y[active]
        d = delta[active].clone().requires_grad_(step < steps)
        point = xa + d
        with torch.set_grad_enabled(step < steps):
            logits = model(point)
            loss = loss_fn(logits, ya)
            grad = torch.autograd.grad(loss.sum(), d)[0] if step < steps else None
        with torch.no_grad():
            fooled = success(logits, ya)
            best.offer(point.detach(), fooled, loss.detach(), active)
            if trace is not None:
                if run_trace is None:
                    run_trace = RunTrace(loss, first_step + step)
                else:
                    run_trace.record_rows(loss, first_step + step, active)
            if grad is not None:
                if momentum:
                    l1 = grad.abs().flatten(1).sum(1).clamp_min(1e-12).view((-1,) + (1,) * (grad.dim() - 1))
                    velocity[active] = momentum * velocity[active] + grad / l1
                    grad = velocity[active]
                rows_step = step_size[active] if isinstance(step_size, torch.Tensor) else step_size
                d = d.detach() + rows_step * steepest_direction(grad, norm)
                d = project(d, eps_b[active] if isinstance(eps_b, torch.Tensor) else eps, norm)
                delta[active] = (xa + d).clamp(low, high) - xa
            if fooled.any():  # leave only when the real decision agrees (a surrogate can be wrong)
                candidates = fooled.nonzero().squeeze(1)
                confirmed = decided(point.detach()[candidates], ya[candidates])
                keep = torch.ones(len(active), dtype=torch.bool, device=x.device)
                keep[candidates[confirmed]] = False
                active = active[keep]
    if trace is not None and run_trace is not None:
        trace.merge(run_trace, idx)
