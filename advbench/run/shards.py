"""Cells as sample shards: the unit both the Ray and the process-pool executors hand out.

A `Shard` holds everything a worker needs, planned by the driver: the cell, how its models
load, all sample ids (for the parts' checks) and its own samples. `run_shard` loads the data
and the defense itself and runs the shard's batches with the same per-batch seeds and the
same batch parts as a local run, so a finished cell joins into the same records. `run_shards`
is the driver's loop, written once for every pool: submit each shard with a batch left, then
finish (or refuse) each cell as its last shard returns. A pool that can (local processes) also
carries each running shard's progress and messages back to the driver (`ShardReporter`), so the
grid's bar and time left move while cells run, not only when a shard returns.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

import torch

from ..config import Grid
from ..data import load_dataset
from ..defense_loading import DefensePlan
from ..errors import AdvbenchError
from ..progress import Advance, Observer
from ..settings import Paths
from ..store import RunStore
from .cell import run_cell
from .device import pick_device
from .models import ModelCache, model_key
from .parts import CellParts
from .plan import PlannedCell
from .predict import clean_predictions
from .schedule import CellJob
from .session import Session

# what a shard returns: its cell id, the seconds it took and, when the cell cannot be evaluated, why
ShardResult = tuple[str, float, "str | None"]
# what a running shard reports: its cell id, its first sample, and the seconds it has run (a float)
# or a message for the user (a str)
ShardReport = tuple[str, int, "float | str"]
REPORT_SECONDS = 1.0  # how often a running shard sends its progress to the driver


def shard_starts(samples: int, batch_size: int, shard_size: int) -> list[tuple[int, int]]:
    """(start, stop) of each shard; shards hold whole batches so their seeds match a local run."""
    size = max(batch_size, math.ceil(shard_size / batch_size) * batch_size)
    return [(start, min(start + size, samples)) for start in range(0, samples, size)]


@dataclass(frozen=True)
class Shard:
    """Everything a worker needs, planned by the driver: the cell, how its models load,
    all sample ids (for the parts' checks) and its own samples [start, stop)."""

    grid: Grid
    cell: PlannedCell
    model: DefensePlan
    source: DefensePlan | None
    indices: torch.Tensor
    inputs: torch.Tensor
    labels: torch.Tensor
    start: int
    paths: Paths
    store_path: str


class ShardReporter(Observer):
    """A worker's observer: sends the seconds the shard has run (as it makes progress, at most
    every `interval` seconds) and its messages (an out-of-memory retry, non-finite logits) to the
    driver through `send`, where otherwise they would end in the worker. Seconds, not the
    attack's count of evaluations: an evaluation of the few inputs still standing costs these
    small models nearly what one of the whole batch does."""

    def __init__(self, send: Callable[[ShardReport], None], cell_id: str, start: int,
                 interval: float = REPORT_SECONDS, started: float | None = None) -> None:
        self.send, self.cell_id, self.start, self.interval = send, cell_id, start, interval
        self.started = time.perf_counter() if started is None else started

    def message(self, text: str) -> None:
        self.send((self.cell_id, self.start, text))

    @contextmanager
    def task(self, description: str, total: int, work: float | None = None,
             done_before: int = 0) -> Iterator[Advance]:
        last = time.perf_counter()

        def advance(n: float = 1, work: float | None = None) -> None:
            nonlocal last
            now = time.perf_counter()
            if now - last >= self.interval:
                self.send((self.cell_id, self.start, now - self.started))
                last = now

        yield advance


def run_shard(shard: Shard, report: Callable[[ShardReport], None] | None = None,
              report_seconds: float = REPORT_SECONDS) -> ShardResult:
    """One worker task: the shard's batches of one cell, each written as a part; with `report`,
    its progress (every `report_seconds`) and messages go to the driver while it runs."""
    started = time.perf_counter()
    grid, cell, paths = shard.grid, shard.cell, shard.paths
    data = load_dataset(grid.dataset, paths.data_dir, paths.download)
    plans = {model_key(cell.plan.defense): shard.model}
    if cell.plan.attack.source and shard.source is not None:
        plans[(cell.plan.attack.source, None, ())] = shard.source
    models = ModelCache(data, zoo_dir=paths.zoo_dir, device=pick_device(grid.device), plans=plans)
    stop = shard.start + len(shard.inputs)
    parts = CellParts(RunStore(Path(shard.store_path)), cell.plan, cell.attack, shard.indices, grid.batch_size,
                      grid.save_adversarials)
    try:
        defense = models.get(*model_key(cell.plan.defense))
        source = models.get(cell.plan.attack.source) if cell.plan.attack.source else None
        clean = clean_predictions(defense, cell.plan.defense.id, shard.inputs, shard.labels, grid, models.device,
                                  offset=shard.start)
        run_cell(cell.plan, cell.attack, defense, shard.indices[shard.start:stop], shard.inputs, shard.labels,
                 clean, batch_size=grid.batch_size, bounds=data.info.bounds, num_classes=data.info.num_classes,
                 device=models.device, source=source, load_model=models.get, dataset=data.info.name,
                 seed=grid.seed, offset=shard.start, parts=parts, carry_examples=grid.carry_examples,
                 observer=None if report is None else ShardReporter(report, cell.id, shard.start, report_seconds,
                                                                    started))
    except AdvbenchError as exc:
        return cell.id, time.perf_counter() - started, str(exc)
    return cell.id, time.perf_counter() - started, None


class ShardPool(Protocol):
    """Where shards run: Ray tasks or local processes."""

    def submit(self, shard: Shard) -> Any:
        """Start `shard`; a handle for `next_done`."""

    def next_done(self, pending: list[Any], on_report: Callable[[ShardReport], None]) -> tuple[ShardResult, list[Any]]:
        """Wait for one of `pending` to finish: its result and the handles still pending (a crash
        raises); the running shards' reports that arrive meanwhile go to `on_report`, where the
        pool carries them."""


def shard_of(session: Session, cell: PlannedCell, start: int, stop: int) -> Shard:
    plan = session.plan
    defense = next(d for d in plan.defenses if d.spec == cell.plan.defense)
    source = plan.sources.get(cell.plan.attack.source) if cell.plan.attack.source else None
    samples = plan.samples_for(cell.plan.defense)
    return Shard(plan.grid, cell, defense.model, source, samples.indices, samples.inputs[start:stop],
                 samples.labels[start:stop], start, plan.paths, str(session.store.path))


def missing_shards(session: Session, todo: list[CellJob], shard_size: int
                   ) -> tuple[list[tuple[CellJob, int, int]], dict[str, int]]:
    """(job, start, stop) of every shard with a batch left (kept parts of an interrupted attempt
    are not run again), and how many each cell has."""
    plan = session.plan
    left: dict[str, int] = {}
    shards: list[tuple[CellJob, int, int]] = []
    for job in todo:
        parts = session.parts(job.cell)
        starts = shard_starts(len(plan.samples_for(job.cell.plan.defense)), plan.grid.batch_size,
                              shard_size or plan.grid.batch_size)
        missing = [(start, stop) for start, stop in starts if not all(
            parts.finished(b, min(b + plan.grid.batch_size, stop)) for b in range(start, stop, plan.grid.batch_size))]
        left[job.id] = len(missing)
        shards += [(job, start, stop) for start, stop in missing]
    return shards, left


def run_shards(pool: ShardPool, session: Session, todo: list[CellJob], shard_size: int, advance: Advance,
               fail_fast: bool) -> None:
    """Submit every shard with a batch left, the costliest cells first (a pool of workers then
    ends together), then finish (or refuse) each cell as its last shard returns. Each shard
    advances the grid's work by its share of its cell: while it runs, by the seconds it reports
    at the pace of the shards returned so far (`_Pace`; at most 95% of it), and the rest when it
    returns; each finished cell, the count."""
    shards, left = missing_shards(session, todo, shard_size)
    seconds = {job.id: 0.0 for job in todo}
    shards.sort(key=lambda shard: -session.expected_seconds(shard[0].cell) * (shard[2] - shard[1]))
    running = {pool.submit(shard_of(session, job.cell, start, stop)):
               _RunningShard(job.id, start, session.expected_seconds(job.cell) * (stop - start))
               for job, start, stop in shards}
    by_start = {(shard.cell_id, shard.start): shard for shard in running.values()}
    refused: set[str] = set()
    for job in todo:
        if left[job.id] == 0:  # every batch was kept from an interrupted attempt
            session.finish(job.cell, 0.0)
            advance(1, session.cell_work(job.cell))
    cells = {job.id: job.cell for job in todo}
    pace = _Pace()

    def on_report(report: ShardReport) -> None:
        cell_id, start, what = report
        if isinstance(what, str):
            session.observer.message(what)
        elif (cell_id, start) in by_start:  # a late report of a shard already returned is dropped
            advance(0, by_start[cell_id, start].credit(pace.work_of(what)))

    handles = list(running)
    while handles:
        (cell_id, took, error), still = pool.next_done(handles, on_report)
        done = running.pop(next(handle for handle in handles if handle not in still))
        del by_start[done.cell_id, done.start]
        pace.add(took, done.work)
        advance(0, done.rest())
        handles = still
        left[cell_id] -= 1
        seconds[cell_id] += took
        if error is not None and cell_id not in refused:
            refused.add(cell_id)
            session.refuse(cells[cell_id], error)
            advance(1, 0)
            if fail_fast:
                raise AdvbenchError(error)
        elif left[cell_id] == 0 and cell_id not in refused:
            session.finish(cells[cell_id], seconds[cell_id])
            advance(1, 0)


@dataclass
class _Pace:
    """Expected work done per second a shard runs, from the shards returned so far: the work is
    a ceiling (an attack's full budget), so a second of a running shard is worth the work a
    returned shard's second was (0 before any returned: no guess then)."""

    seconds: float = 0.0
    work: float = 0.0

    def add(self, seconds: float, work: float) -> None:
        self.seconds += seconds
        self.work += work

    def work_of(self, seconds: float) -> float:
        return seconds * self.work / self.seconds if self.seconds > 0 else 0.0


@dataclass
class _RunningShard:
    """A submitted shard's expected work (seconds) and how much of it its reports have credited:
    never all of it before it returns (the last batches can be the slow ones)."""

    cell_id: str
    start: int
    work: float
    credited: float = 0.0

    def credit(self, worth: float) -> float:
        """Credit up to `worth` of work done in all (the shard's reports are cumulative)."""
        step = max(0.0, min(worth, 0.95 * self.work) - self.credited)
        self.credited += step
        return step

    def rest(self) -> float:
        step, self.credited = self.work - self.credited, self.work
        return step
