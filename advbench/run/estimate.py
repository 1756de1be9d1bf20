"""Time: a cell's progress within a batch, and the up-front estimate of a defense's cells."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch

from ..contract import Access, CellRole
from ..data import Dataset
from ..defenses.base import Defense
from ..progress import Observer
from .plan import PlannedCell
from .target import SharedCleanGradients, attack_target, clean_gradient_norms


class BatchCredit:
    """Moves a cell's progress bar while a batch is attacked: each model evaluation of k inputs
    is worth k / (evaluations the attack expects per input) samples, never the whole batch
    before it is done; `finish` credits the rest."""

    def __init__(self, advance: Callable[[float], None], size: int, evaluations_per_input: int) -> None:
        self.advance, self.size, self.per_input, self.credited = advance, size, evaluations_per_input, 0.0

    def __call__(self, inputs: int) -> None:
        step = min(inputs / self.per_input, 0.95 * self.size - self.credited)
        if step > 0:
            self.credited += step
            self.advance(step)

    def finish(self) -> None:
        self.advance(self.size - self.credited)
        self.credited = float(self.size)


QUICK_PASS_SECONDS = 0.05  # below this, timing a second (warm) gradient pass costs next to nothing


def seconds_per_evaluation(defense: Defense, x: torch.Tensor, y: torch.Tensor, data: Dataset,
                           gradients: SharedCleanGradients | None = None) -> float:
    """Wall seconds of one gradient evaluation per input on this machine (forward and backward),
    measured on a whole batch `x` (a defense's cost per input can fall steeply with batch size),
    the samples' first. The timed pass is that batch's clean gradient pass, kept in `gradients` for
    its records, so a large model pays no extra pass; a quick one (first calls fill caches, a
    warm-started model's later steps cost less than its first) is timed once more, warm."""
    gradients = gradients or SharedCleanGradients(defense)
    target, _ = attack_target(defense, 1, data.info.bounds, data.info.num_classes)
    start = time.perf_counter()
    gradients(target, x, y, 0)
    seconds = time.perf_counter() - start
    if seconds < QUICK_PASS_SECONDS:
        start = time.perf_counter()
        clean_gradient_norms(target, x, y)
        seconds = time.perf_counter() - start
    return seconds / max(1, len(x))


FORWARD_SHARE = 1 / 3  # a forward pass's share of a forward-and-backward one


def announce_estimate(defense_id: str, defense: Defense, cells: list[PlannedCell], inputs: torch.Tensor,
                      labels: torch.Tensor, data: Dataset, batch_size: int, device: torch.device,
                      observer: Observer, gradients: SharedCleanGradients | None = None,
                      source_seconds: Callable[[str], float] | None = None) -> DefenseEstimate:
    """Say up front when a defense's cells will take long (timed on one batch; batches are
    seeded, so this costs no reproducibility); returns the defense's seconds per evaluation and
    each cell's ceiling in seconds per sample (empty when it could not be timed), by which a
    pool of workers orders its shards. `source_seconds` times a transfer cell's source model."""
    probe = slice(0, min(batch_size, len(inputs)))
    try:
        seconds = seconds_per_evaluation(defense, inputs[probe].to(device), labels[probe].to(device), data, gradients)
        per_sample = {cell.id: cell_seconds(cell, seconds, defense.stochastic, defense.eot_samples, source_seconds)
                      for cell in cells}
    except Exception:  # noqa: BLE001 - an estimate must never stop a run
        return DefenseEstimate(None, {})
    message = estimate_message(defense_id, seconds, cells, len(inputs), device, defense.eot_samples,
                               stochastic=defense.stochastic, per_sample=per_sample)
    if message:
        observer.message(message)
    return DefenseEstimate(seconds, per_sample)


@dataclass(frozen=True)
class DefenseEstimate:
    """A defense's timing: kept by the session so a transfer from this model is priced at its passes."""

    seconds_per_evaluation: float | None  # one gradient evaluation of one input (None: not timed)
    cells: dict[str, float]  # cell id -> ceiling seconds per sample


def cell_evaluations(cell: PlannedCell, stochastic: bool, eot: int) -> int:
    """Model evaluations per sample of `cell` at its full budget, over all its epsilons."""
    return cell.attack.evaluations_on(stochastic, cell.plan.attack.eot or eot) * max(1, len(cell.plan.epsilons))


def cell_seconds(cell: PlannedCell, seconds: float, stochastic: bool, eot: int,
                 source_seconds: Callable[[str], float] | None = None) -> float:
    """Ceiling seconds per sample of `cell` on a defense whose gradient evaluation of one input takes
    `seconds`: a transfer is crafted on its source (its passes, not the defense's), an attack
    without gradients pays forward passes only."""
    source = cell.plan.attack.source
    if source and source_seconds is not None:
        return source_seconds(source) * cell_evaluations(cell, False, 1)
    share = 1.0 if cell.attack.access is Access.GRADIENT else FORWARD_SHARE
    return seconds * share * cell_evaluations(cell, stochastic, eot)


def estimate_message(defense_id: str, seconds: float, cells: list[PlannedCell], samples: int,
                     device: torch.device, eot: int, threshold: float = 300.0, stochastic: bool = False,
                     per_sample: dict[str, float] | None = None) -> str | None:
    """"eabs on cpu: up to 80 min for 2 cells (24 s per sample with pgd-l2); try --samples 20" when
    a defense's remaining cells could take longer than `threshold` seconds, else None. It is a
    ceiling: every attack's full budget on every sample; attacks stop early on beaten samples
    (and carried ones are not attacked again), so runs usually take less. `per_sample` holds each
    cell's ceiling seconds per sample when the caller has them (`cell_seconds`)."""
    per_cell = per_sample or {cell.id: cell_seconds(cell, seconds, stochastic, eot) for cell in cells}
    by_attack = {cell.plan.attack.id: per_cell[cell.id] for cell in cells}
    total = samples * sum(by_attack.values())
    if total < threshold:
        return None
    asked = [cell.plan.attack.id for cell in cells if cell.plan.attack.role is CellRole.EVALUATED] or list(by_attack)
    slowest = max(asked, key=by_attack.get)  # sanity cells count in the total but are not the reason given
    suggestion = max(10, int(samples * threshold / total) // 10 * 10)
    hint = f"; for a first look try --samples {suggestion}" if suggestion < samples else ""
    return (f"{defense_id} on {device.type}: up to {duration_text(total)} for {len(cells)} cell(s) of {samples} samples "
            f"({by_attack[slowest]:.1f} s per sample with {slowest}){hint}")


def duration_text(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
