"""The attack engine's shared bookkeeping, so that an attack writes its step and not its records.

Projection onto a ball, random starts, the steepest direction, the best point per sample
(by success, then loss), the smallest successful perturbation per sample (minimum-norm
attacks), and the per-sample loss trace. Plain torch on whole batches.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, TypeVar

import torch

from ..norms import Norm

T = TypeVar("T")
Radius = float | torch.Tensor  # one epsilon (or step size) for the batch, or one per sample [n]


def per_sample_norm(t: torch.Tensor, norm: Norm) -> torch.Tensor:
    """Each sample's norm as [n, 1, 1, ...], never below 1e-12 (safe to divide by)."""
    view = (-1,) + (1,) * (t.dim() - 1)
    return norm.of(t).clamp_min(1e-12).view(view)


def broadcast(value: Radius, like: torch.Tensor) -> Radius:
    """A per-sample radius as [n, 1, 1, ...] against `like`; a float as it is."""
    if isinstance(value, torch.Tensor):
        return value.to(like.dtype).view((-1,) + (1,) * (like.dim() - 1))
    return value


def project(delta: torch.Tensor, eps: Radius, norm: Norm) -> torch.Tensor:
    if norm is Norm.LINF:
        if isinstance(eps, torch.Tensor):
            bound = broadcast(eps, delta)
            return torch.minimum(torch.maximum(delta, -bound), bound)
        return delta.clamp(-eps, eps)
    # reciprocal-then-multiply is what `float / tensor` computes: per-sample radii give the same bits
    return delta * (per_sample_norm(delta, Norm.L2).reciprocal() * broadcast(eps, delta)).clamp(max=1.0)


def random_start(x: torch.Tensor, eps: Radius, norm: Norm) -> torch.Tensor:
    """A random perturbation in the eps-ball (`Norm.random_in_ball`). With one epsilon per sample,
    each run of equal epsilons is drawn in turn, consuming the random stream exactly as
    separate calls per epsilon would."""
    if isinstance(eps, torch.Tensor):
        values = eps.tolist()
        starts = [i for i in range(len(values)) if i == 0 or values[i] != values[i - 1]] + [len(values)]
        return torch.cat([norm.random_in_ball(x[a:b], values[a]) for a, b in zip(starts, starts[1:])])
    return norm.random_in_ball(x, eps)


def steepest_direction(grad: torch.Tensor, norm: Norm) -> torch.Tensor:
    """Normalised steepest ascent: sign for Linf, unit L2 direction for L2."""
    if norm is Norm.LINF:
        return grad.sign()
    return grad / per_sample_norm(grad, Norm.L2)


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

    def standing(self) -> torch.Tensor:
        """Rows still worth attacking: those not beaten yet (every row when success is not the goal)."""
        if not self.prefer_misclassified:
            return torch.arange(len(self.fooled), device=self.fooled.device)
        return (~self.fooled).nonzero().squeeze(1)

    def on_standing(self, rounds: Iterable[T], attack: Callable[[T, torch.Tensor], "BestPoints"]) -> "BestPoints":
        """Run `attack(round, rows)` for each round (restarts, targets) on the rows still standing,
        keeping each sample's best point; stop early when none stands."""
        for each in rounds:
            idx = self.standing()
            if len(idx) == 0:
                break
            run = attack(each, idx)
            self.offer(run.point, run.fooled, run.loss, idx)
        return self


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

    def merge(self, run: "RunTrace", idx: torch.Tensor) -> None:
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


class RunTrace:
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

    def record_rows(self, loss: torch.Tensor, step: int, rows: torch.Tensor) -> None:
        """`record` for some of the run's rows (the others have left the run)."""
        loss = loss.detach().float()
        better = loss > self.best[rows]
        self.best, self.best_step, self.last = self.best.clone(), self.best_step.clone(), self.last.clone()
        self.best[rows] = torch.where(better, loss, self.best[rows])
        self.best_step[rows] = self.best_step[rows].masked_fill(better, float(step))
        self.last[rows] = loss


class SmallestSuccess:
    """Per sample, the smallest successful perturbed input found so far (minimum-norm attacks):
    the input itself, at size infinity, until some candidate succeeds."""

    def __init__(self, x: torch.Tensor) -> None:
        self.points = x.clone()
        self.sizes = torch.full((len(x),), math.inf, device=x.device)

    @torch.no_grad()
    def offer(self, points: torch.Tensor, sizes: torch.Tensor, success: torch.Tensor,
              rows: torch.Tensor | None = None) -> torch.Tensor:
        """Keep each successful candidate smaller than the best so far (candidates for `rows` of
        the batch, when given); returns where it was kept, among the candidates."""
        if rows is None:
            better = success & (sizes < self.sizes)
            self.points[better], self.sizes[better] = points[better], sizes[better]
            return better
        better = success & (sizes < self.sizes[rows])
        self.points[rows[better]], self.sizes[rows[better]] = points[better], sizes[better]
        return better
