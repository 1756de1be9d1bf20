"""The local executor: the session's jobs, defense by defense, in this process.

For each defense the clean predictions are computed once and shared by its cells. A cell
that fails is recorded in the manifest with its reason and the grid goes on (unless
`fail_fast`); a resume reruns it, from its last finished batch.
"""

from __future__ import annotations

import time
from itertools import groupby
from pathlib import Path

from ..config import Grid
from ..contract import Manifest
from ..data import Dataset
from ..errors import AdvbenchError
from ..progress import Advance, Observer
from ..store import RunStore
from .cell import run_cell
from .models import model_key
from ..settings import Paths
from .plan import Plan, plan_grid
from .predict import clean_predictions
from .schedule import CellJob
from .session import Session


def run_grid(grid: Grid, data: Dataset, store: RunStore, *, zoo_dir: Path | None = None,
             observer: Observer | None = None, plan: Plan | None = None, fail_fast: bool = False,
             reuse: bool = True) -> Manifest:
    """Run every unfinished cell of `grid` into `store` (verified finished cells are kept);
    `plan` from an earlier `prepare` or `plan_grid(grid, data)` saves planning it again.

    Every batch is seeded from the grid seed, its cell and its first sample, so a cell split
    into shards (the Ray executor) gives the same records as one run here. With `reuse`, a cell
    an earlier run under the same results directory computed with the same content key
    (`advbench.reuse`) is copied from it instead of being run."""
    observer = observer or Observer()
    plan = plan if plan is not None else plan_grid(grid, data, Paths(zoo_dir=zoo_dir))
    with store.lock():
        session = Session.open(plan, store, observer, reuse)
        todo = session.jobs(fail_fast)
        with observer.task("grid cells", len(todo), work=session.estimate(todo)) as advance:
            for _, jobs in groupby(todo, key=lambda job: job.cell.plan.defense):
                run_defense(session, list(jobs), advance, fail_fast)
    return session.manifest


def run_defense(session: Session, jobs: list[CellJob], advance: Advance, fail_fast: bool) -> None:
    """One defense's cells: clean predictions once, then each cell."""
    plan, manifest, observer = session.plan, session.manifest, session.observer
    spec = jobs[0].cell.plan.defense
    defense = session.models.get(*model_key(spec))
    samples, device = plan.samples_for(spec), plan.device
    try:
        started = time.perf_counter()
        clean = clean_predictions(defense, spec.id, samples.inputs, samples.labels, plan.grid, device,
                                  first_batch=session.probe_predictions.pop(spec.id, None))
        manifest.timings.clean[spec.id] = round(time.perf_counter() - started, 3)
    except AdvbenchError as exc:
        for job in jobs:
            session.refuse(job.cell, str(exc))
            advance(1, session.cell_work(job.cell))
        if fail_fast:
            raise
        return
    for job in jobs:
        cell = job.cell
        try:
            observer.detail(f"cell {cell.id}: {cell.attack!r}")
            started = time.perf_counter()
            source = session.models.get(cell.plan.attack.source) if cell.plan.attack.source else None
            run_cell(cell.plan, cell.attack, defense, samples.indices, samples.inputs, samples.labels, clean,
                     batch_size=plan.grid.batch_size, bounds=plan.data.info.bounds,
                     num_classes=plan.data.info.num_classes, device=device, observer=observer, source=source,
                     load_model=session.models.get, dataset=plan.data.info.name, seed=plan.grid.seed,
                     parts=session.parts(cell), carry_examples=plan.grid.carry_examples,
                     clean_gradients=session.clean_gradients(spec.id))
            session.finish(cell, time.perf_counter() - started)
        except AdvbenchError as exc:
            session.refuse(cell, str(exc))
            if fail_fast:
                raise
        advance(1, session.cell_work(cell))
