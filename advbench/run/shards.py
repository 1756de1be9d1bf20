"""Cells as sample shards: the unit both the Ray and the process-pool executors hand out.

A `Shard` holds everything a worker needs, planned by the driver: the cell, how its models
load, all sample ids (for the parts' checks) and its own samples. `run_shard` loads the data
and the defense itself and runs the shard's batches with the same per-batch seeds and the
same batch parts as a local run, so a finished cell joins into the same records. `run_shards`
is the driver's loop, written once for every pool: submit each shard with a batch left, then
finish (or refuse) each cell as its last shard returns. A pool that can (local processes) also
carries each running shard's messages back to the driver (`ShardMessages`), so a warning raised
in a worker reaches the user.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

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
from .pool_time import PoolTimeLeft
from .predict import clean_predictions
from .schedule import CellJob
from .session import Session

# what a shard returns: its cell id, the seconds it took and, when the cell cannot be evaluated, why
ShardResult = tuple[str, float, "str | None"]


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


class ShardMessages(Observer):
    """A worker's observer: sends the shard's messages (an out-of-memory retry, non-finite
    logits) to the driver through `send`, where otherwise they would end in the worker. Its
    progress is not sent: the driver knows when each shard started and returned (`pool_time`);
    crediting running shards' evaluations or seconds to the grid's work put the demo's time left
    3-15x off (bench/RESULTS.md)."""

    def __init__(self, send: Callable[[str], None]) -> None:
        self.send = send

    def message(self, text: str) -> None:
        self.send(text)


def run_shard(shard: Shard, send_message: Callable[[str], None] | None = None) -> ShardResult:
    """One worker task: the shard's batches of one cell, each written as a part; with
    `send_message`, its messages go to the driver while it runs."""
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
                 observer=None if send_message is None else ShardMessages(send_message))
    except AdvbenchError as exc:
        return cell.id, time.perf_counter() - started, str(exc)
    return cell.id, time.perf_counter() - started, None


class ShardPool(Protocol):
    """Where shards run: Ray tasks or local processes."""

    def submit(self, shard: Shard) -> Any:
        """Start `shard`; a handle for `next_done`."""

    def next_done(self, pending: list[Any], on_message: Callable[[str], None]) -> tuple[ShardResult, list[Any]]:
        """Wait for one of `pending` to finish: its result and the handles still pending (a crash
        raises); the running shards' messages that arrive meanwhile go to `on_message`, where the
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
               fail_fast: bool, time_left: PoolTimeLeft | None = None) -> None:
    """Submit every shard with a batch left, the costliest cells first (a pool of workers then
    ends together), then finish (or refuse) each cell as its last shard returns. Each returned
    shard advances the grid's work by its share of its cell; each finished cell, the count.
    `time_left` hears of each submission and return (the pool's own estimate of what is left)."""
    shards, left = missing_shards(session, todo, shard_size)
    seconds = {job.id: 0.0 for job in todo}
    shards.sort(key=lambda shard: -session.expected_seconds(shard[0].cell) * (shard[2] - shard[1]))
    time_left = time_left or PoolTimeLeft(1)
    pending: dict[Any, float] = {}
    for job, start, stop in shards:
        handle = pool.submit(shard_of(session, job.cell, start, stop))
        pending[handle] = session.expected_seconds(job.cell) * (stop - start)
        time_left.submitted(handle, pending[handle])
    refused: set[str] = set()
    for job in todo:
        if left[job.id] == 0:  # every batch was kept from an interrupted attempt
            session.finish(job.cell, 0.0)
            advance(1, session.cell_work(job.cell))
    cells = {job.id: job.cell for job in todo}
    handles = list(pending)
    while handles:
        (cell_id, took, error), still = pool.next_done(handles, session.observer.message)
        done = next(handle for handle in handles if handle not in still)
        time_left.returned(done, took)
        advance(0, pending.pop(done))
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
