"""The Ray executor: the session's jobs split into sample shards, each a Ray task.

The driver opens the same `Session` as a local run (inspection, schedule, skip / refuse /
reuse, estimates); each task loads the data and its defense itself and runs its shard with
the same per-batch seeds and the same batch parts as a local run, so a finished cell joins
into the local run's records (saved adversarial inputs included). A cell whose shard fails
is refused with the reason and the grid goes on (unless `fail_fast`); a crashed worker
loses only its batch in progress, and `--resume` runs only the batches without a part.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Any, Callable

import torch

from ..config import Grid
from ..contract import Manifest
from ..data import load_dataset
from ..errors import AdvbenchError
from ..progress import Observer
from ..store import RunStore
from ..defense_loading import DefensePlan
from .cell import run_cell
from .device import pick_device
from .models import ModelCache, model_key
from .parts import CellParts
from ..settings import Paths
from .plan import Plan, PlannedCell
from .predict import clean_predictions
from .schedule import CellJob
from .session import Session

INSTALL_HINT = "the Ray executor needs ray: pip install 'advbench[ray]'"


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise AdvbenchError(INSTALL_HINT) from None
    return ray


def shard_starts(samples: int, batch_size: int, shard_size: int) -> list[tuple[int, int]]:
    """(start, stop) of each shard; shards hold whole batches so their seeds match a local run."""
    size = max(batch_size, math.ceil(shard_size / batch_size) * batch_size)
    return [(start, min(start + size, samples)) for start in range(0, samples, size)]


@dataclass(frozen=True)
class Shard:
    """Everything a Ray task needs, planned by the driver: the cell, how its models load,
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


def run_shard(shard: Shard) -> tuple[str, float, str | None]:
    """One Ray task: the shard's batches of one cell, each written as a part; returns the cell
    id, the seconds it took and, when the cell cannot be evaluated, why."""
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
                 seed=grid.seed, offset=shard.start, parts=parts, carry_examples=grid.carry_examples)
    except AdvbenchError as exc:
        return cell.id, time.perf_counter() - started, str(exc)
    return cell.id, time.perf_counter() - started, None


def run_grid_on_ray(plan: Plan, store: RunStore, *, observer: Observer, address: str | None = None,
                    shard_size: int = 0, reuse: bool = True, fail_fast: bool = False) -> Manifest:
    """The Ray counterpart of `run.local.run_grid` (see the module docstring)."""
    ray = import_ray()
    with store.lock():
        session = Session.open(plan, store, observer, reuse)
        with observer.task("grid cells", session.pending()) as advance:
            todo = session.jobs(advance, fail_fast)
            for _, jobs in groupby(todo, key=lambda job: job.cell.plan.defense):
                session.announce_estimate(list(jobs))
            if not ray.is_initialized():
                ray.init(address=address, include_dashboard=False, log_to_driver=False)
            run_shards(ray, session, todo, shard_size, advance, fail_fast)
    return session.manifest


def run_shards(ray: Any, session: Session, todo: list[CellJob], shard_size: int, advance: Callable[[int], None],
               fail_fast: bool) -> None:
    """Submit every shard with a batch left, then finish (or refuse) each cell as its last shard returns."""
    plan = session.plan
    task = ray.remote(num_gpus=1 if plan.device.type == "cuda" else 0)(run_shard)
    left: dict[str, int] = {}
    seconds: dict[str, float] = {}
    pending = []
    for job in todo:
        parts = session.parts(job.cell)
        shards = shard_starts(len(plan.samples_for(job.cell.plan.defense)), plan.grid.batch_size,
                              shard_size or plan.grid.batch_size)
        missing = [(start, stop) for start, stop in shards if not all(
            parts.finished(b, min(b + plan.grid.batch_size, stop)) for b in range(start, stop, plan.grid.batch_size))]
        left[job.id], seconds[job.id] = len(missing), 0.0
        pending += [task.remote(shard_of(session, job.cell, start, stop)) for start, stop in missing]
    refused: set[str] = set()
    for job in todo:
        if left[job.id] == 0:  # every batch was kept from an interrupted attempt
            session.finish(job.cell, 0.0)
            advance(1)
    cells = {job.id: job.cell for job in todo}
    with session.observer.task("shards on ray", len(pending)) as advance_shards:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            cell_id, took, error = ray.get(done[0])  # a crash stops the run here; finished batches stay on disk
            advance_shards(1)
            left[cell_id] -= 1
            seconds[cell_id] += took
            if error is not None and cell_id not in refused:
                refused.add(cell_id)
                session.refuse(cells[cell_id], error)
                advance(1)
                if fail_fast:
                    raise AdvbenchError(error)
            elif left[cell_id] == 0 and cell_id not in refused:
                session.finish(cells[cell_id], seconds[cell_id])
                advance(1)


def shard_of(session: Session, cell: PlannedCell, start: int, stop: int) -> Shard:
    plan = session.plan
    defense = next(d for d in plan.defenses if d.spec == cell.plan.defense)
    source = plan.sources.get(cell.plan.attack.source) if cell.plan.attack.source else None
    samples = plan.samples_for(cell.plan.defense)
    return Shard(plan.grid, cell, defense.model, source, samples.indices, samples.inputs[start:stop],
                 samples.labels[start:stop], start, plan.paths, str(session.store.path))
