"""Our batched projected-gradient engine.

Used where foolbox cannot help: a defense-provided loss, Adam steps on the
perturbation (GAT), momentum (MIM) and random restarts that keep, per sample, the
first restart that fooled the model. Plain torch on whole batches, so it is at
least as fast as foolbox's PGD (see bench/pgd_speed.py).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from ..norms import Norm
from .base import Loss

STEP_RULES = ("sign", "adam")


Radius = float | torch.Tensor  # one epsilon (or step size) for the batch, or one per sample [n]


def _per_sample_norm(t: torch.Tensor, norm: Norm) -> torch.Tensor:
    view = (-1,) + (1,) * (t.dim() - 1)
    return norm.of(t).clamp_min(1e-12).view(view)


def _broadcast(value: Radius, like: torch.Tensor) -> Radius:
    """A per-sample radius as [n, 1, 1, ...] against `like`; a float as it is."""
    if isinstance(value, torch.Tensor):
        return value.to(like.dtype).view((-1,) + (1,) * (like.dim() - 1))
    return value


def project(delta: torch.Tensor, eps: Radius, norm: Norm) -> torch.Tensor:
    if norm is Norm.LINF:
        if isinstance(eps, torch.Tensor):
            bound = _broadcast(eps, delta)
            return torch.minimum(torch.maximum(delta, -bound), bound)
        return delta.clamp(-eps, eps)
    # reciprocal-then-multiply is what `float / tensor` computes: per-sample radii give the same bits
    return delta * (_per_sample_norm(delta, Norm.L2).reciprocal() * _broadcast(eps, delta)).clamp(max=1.0)


def random_start(x: torch.Tensor, eps: Radius, norm: Norm) -> torch.Tensor:
    """Uniform in the Linf ball; in the L2 ball a uniform direction at a radius uniform in
    [0, eps] (as torchattacks). A draw uniform over the L2 ball (radius eps * u^(1/d)) lies
    almost on its surface in d dimensions and left PGD-L2 0.5-3 points weaker than
    torchattacks on the digits models (bench/pgd_crosscheck.py). With one epsilon per sample,
    each run of equal epsilons is drawn in turn, consuming the random stream exactly as
    separate calls per epsilon would."""
    if isinstance(eps, torch.Tensor):
        values = eps.tolist()
        starts = [i for i in range(len(values)) if i == 0 or values[i] != values[i - 1]] + [len(values)]
        return torch.cat([random_start(x[a:b], values[a], norm) for a, b in zip(starts, starts[1:])])
    if norm is Norm.LINF:
        return torch.empty_like(x).uniform_(-eps, eps)
    direction = torch.randn_like(x)
    direction = direction / _per_sample_norm(direction, Norm.L2)
    radius = torch.rand(len(x), device=x.device, dtype=x.dtype) * eps
    return direction * radius.view((-1,) + (1,) * (x.dim() - 1))


def steepest_direction(grad: torch.Tensor, norm: Norm) -> torch.Tensor:
    """Normalised steepest ascent: sign for Linf, unit L2 direction for L2."""
    if norm is Norm.LINF:
        return grad.sign()
    return grad / _per_sample_norm(grad, Norm.L2)


class BestPoints:
    """Per-sample best point so far, ranked by (misclassified, loss) or by loss alone."""

    def __init__(self, x: torch.Tensor, prefer_misclassified: bool) -> None:
        self.point = x.clone()
        self.fooled = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        self.loss = torch.full((len(x),), float("-inf"), device=x.device)
        self.prefer_misclassified = prefer_misclassified

    def offer(self, point: torch.Tensor, fooled: torch.Tensor, loss: torch.Tensor, idx: torch.Tensor | None = None) -> None:
        rows = slice(None) if idx is None else idx
        old_fooled, old_loss = self.fooled[rows], self.loss[rows]
        better = loss > old_loss
        if self.prefer_misclassified:
            better = (fooled & ~old_fooled) | ((fooled == old_fooled) & better)
        if idx is None:  # every step of a run: masked writes, no index gathering
            self.point = torch.where(better.view((-1,) + (1,) * (point.dim() - 1)), point, self.point)
            self.fooled = torch.where(better, fooled, self.fooled)
            self.loss = torch.where(better, loss, self.loss)
            return
        target = idx[better]
        self.point[target] = point[better]
        self.fooled[target] = fooled[better]
        self.loss[target] = loss[better]


class LossTrace:
    """Per sample, over all steps and restarts: the loss at the first step, the best and the
    last, and the step of the best (counted across restarts). Records keep it, so that
    flags can tell a finished optimisation from one cut short (Pintor et al. 2022)."""

    def __init__(self, n: int, device: torch.device) -> None:
        self.first = torch.full((n,), math.nan, device=device)
        self.best = torch.full((n,), -math.inf, device=device)
        self.last = torch.full((n,), math.nan, device=device)
        self.best_step = torch.full((n,), math.nan, device=device)

    def record(self, loss: torch.Tensor, step: int, idx: torch.Tensor | None = None) -> None:
        rows = torch.arange(len(self.first), device=loss.device) if idx is None else idx
        loss = loss.detach().float()
        unset = torch.isnan(self.first[rows])
        self.first[rows[unset]] = loss[unset]
        self.last[rows] = loss
        better = loss > self.best[rows]
        self.best[rows[better]] = loss[better]
        self.best_step[rows[better]] = float(step)

    def merge(self, run: "_RunTrace", idx: torch.Tensor) -> None:
        """Fold one run's trace (rows `idx`) in: what `record` at every step of it would give."""
        unset = torch.isnan(self.first[idx])
        self.first[idx[unset]] = run.first[unset]
        self.last[idx] = run.last
        better = run.best > self.best[idx]
        self.best[idx[better]] = run.best[better]
        self.best_step[idx[better]] = run.best_step[better]

    def details(self) -> dict[str, torch.Tensor]:
        best = torch.where(torch.isinf(self.best), torch.full_like(self.best, math.nan), self.best)
        return {"loss_first": self.first.cpu(), "loss_best": best.cpu(), "loss_last": self.last.cpu(),
                "best_step": self.best_step.cpu()}


class _RunTrace:
    """One run's loss trace on its own rows, kept without indexing at every step (merged once)."""

    def __init__(self, loss: torch.Tensor, step: int) -> None:
        loss = loss.detach().float()
        self.first, self.last, self.best = loss, loss, loss
        self.best_step = torch.full_like(loss, float(step))

    def record(self, loss: torch.Tensor, step: int) -> None:
        loss = loss.detach().float()
        better = loss > self.best
        self.best = torch.where(better, loss, self.best)
        self.best_step = self.best_step.masked_fill(better, float(step))
        self.last = loss


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
    best = BestPoints(x, prefer_misclassified)
    for restart in range(max(restarts, 1)):
        idx = (~best.fooled).nonzero().squeeze(1) if prefer_misclassified else torch.arange(len(x), device=x.device)
        if len(idx) == 0:
            break
        run = BestPoints(x[idx], prefer_misclassified)
        _single_run(model, x[idx], y[idx], run, eps=_rows(eps, idx), norm=norm, steps=steps,
                    step_size=_rows(step_size, idx),
                    loss_fn=loss_fn, bounds=bounds, random_init=random_init, momentum=momentum, step_rule=step_rule,
                    success=success, trace=trace, idx=idx, first_step=restart * (steps + 1))
        best.offer(run.point, run.fooled, run.loss, idx)
    return best.point


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
    step_size = _broadcast(step_size, x)
    optimizer = torch.optim.Adam([delta], lr=step_size, maximize=True) if step_rule == "adam" else None
    run_trace: _RunTrace | None = None
    for step in range(steps):
        point = x + delta
        logits = model(point)
        loss = loss_fn(logits, y)
        (grad,) = torch.autograd.grad(loss.sum(), delta)
        with torch.no_grad():
            best.offer(point.detach(), success(logits, y), loss.detach())
            if trace is not None:
                if run_trace is None:
                    run_trace = _RunTrace(loss, first_step + step)
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
                run_trace = _RunTrace(loss, first_step + steps)
            else:
                run_trace.record(loss, first_step + steps)
            trace.merge(run_trace, idx)
