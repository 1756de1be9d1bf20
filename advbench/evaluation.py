"""The front door: one call that validates a whole grid, trains what is missing, runs it and reports.

Every command that evaluates (`run`, `attack`, `check`, the hyperparameter sweep) and any
Python or notebook user goes through `evaluate`. Everything that can be wrong with a grid
(unknown defenses or attacks, bad options, epsilons, missing checkpoints off digits,
spec syntax) is found by `prepare` before a run directory exists; training missing
models is its own reported step; then the run, the report and its files.

    >>> from advbench import evaluate, Grid
    >>> result = evaluate(load_grid("presets/demo.toml"))      # doctest: +SKIP
    >>> result.report.summary                                  # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping


from .config import Grid
from .data import Dataset
from .defenses.base import Defense
from .contract import Manifest
from .errors import AdvbenchError, RunInterrupted
from .progress import Observer
from .report import Report, build_report, write_artifacts
from .run.device import use_threads
from .run.processes import run_grid_in_processes
from .run.local import run_grid
from .run.plan import Plan, prepare
from .settings import Executor, Paths, ReportOptions, RunOptions
from .store import RunStore, default_results_dir
from .defense_loading import importable_elsewhere, train_missing
from .zoo import Card

__all__ = ["Evaluation", "Paths", "Plan", "ReportOptions", "RunOptions", "evaluate", "prepare"]


@dataclass
class Evaluation:
    """What `evaluate` did: the run directory, its manifest, the report (None when no cell
    finished), the models it trained, and the artifact files it wrote."""

    store: RunStore
    manifest: Manifest
    report: Report | None
    trained: list[Card] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)

    @property
    def failed(self) -> dict[str, str]:
        """Cells that failed, with the reason (the rest of the grid ran)."""
        return dict(self.manifest.refused)


def _refuse_process_local_modules(plan: Plan) -> None:
    """Worker processes (spawned, or Ray's) import each python: defense anew: one whose module
    lives only in this process would fail in every cell, after the run was written."""
    for model in plan.models():
        if model.ref.python_target and not importable_elsewhere(model.ref.python_target):
            raise AdvbenchError(f"defense {model.ref}: its module exists only in this process, so worker processes "
                                "cannot import it: run with --workers 1 (or pass the model to advbench.benchmark)")


def evaluate(grid: Grid, *, paths: Paths = Paths(), run: RunOptions = RunOptions(),
             report: ReportOptions = ReportOptions(), observer: Observer | None = None,
             artifacts: bool = True, models: Mapping[str, Defense] | None = None,
             data: Dataset | None = None) -> Evaluation:
    """Validate `grid`, train missing models, run every unfinished cell and report.

    With `run.resume`, the latest run of the same grid continues (finished cells whose records
    still verify are kept). A cell that fails is recorded with its reason and the grid goes on,
    unless `run.fail_fast`. `run.executor` Ray runs cells as sample shards on a Ray cluster, a grid's
    `workers` > 1 in that many processes here. Cells an earlier run computed on the same content
    (`advbench.reuse`) are copied, unless `run.fresh` (or the grid says `reuse = false`). `report` sets the statistics of the report. `models`
    (defenses by their spec in the grid) and `data` are held in memory by the caller
    (`advbench.benchmark`); they run on the local executor only."""
    observer = observer or Observer()
    executor = Executor(run.executor)
    if run.shard_size < 0:
        raise AdvbenchError("shard size must be positive")
    in_memory = bool(models) or data is not None
    if executor is Executor.RAY:
        if in_memory:
            raise AdvbenchError("in-memory models and data run on the local executor, not on Ray")
        from .run.ray_executor import import_ray

        import_ray()  # a missing extra fails before anything is written
    plan = prepare(grid, paths, models=models, data=data)
    if in_memory and plan.grid.workers > 1:
        raise AdvbenchError("in-memory models and data run in this process: workers must be 1")
    if executor is Executor.RAY or plan.grid.workers > 1:
        _refuse_process_local_modules(plan)
    use_threads(plan.grid.threads, observer, plan.grid.workers if executor is Executor.LOCAL else 1)
    started = time.perf_counter()
    trained = train_missing(plan.models(), plan.data, zoo_dir=paths.zoo_dir, device=plan.device, observer=observer)
    training_seconds = time.perf_counter() - started
    store = open_store(plan.grid, paths, run.resume, observer)
    reuse = plan.grid.reuse and not run.fresh
    try:
        if executor is Executor.RAY:
            from .run.ray_executor import run_grid_on_ray

            manifest = run_grid_on_ray(plan, store, observer=observer, address=run.address,
                                       shard_size=run.shard_size, reuse=reuse, fail_fast=run.fail_fast)
        elif plan.grid.workers > 1:
            manifest = run_grid_in_processes(plan, store, observer=observer, workers=plan.grid.workers, reuse=reuse,
                                             fail_fast=run.fail_fast)
        else:
            manifest = run_grid(plan.grid, plan.data, store, observer=observer, plan=plan, fail_fast=run.fail_fast,
                                reuse=reuse)
    except KeyboardInterrupt:
        raise RunInterrupted(store.kept_work()) from None
    if trained:
        with store.lock():
            manifest = store.manifest()
            manifest.timings.training = round(training_seconds, 3)
            store.write_manifest(manifest)
    built, written = None, []
    if manifest.finished:
        built = build_report([store], alpha=report.alpha, false_alarm=report.false_alarm, holm=report.holm)
        if artifacts:
            written = write_artifacts(built, store.path)
    return Evaluation(store, manifest, built, trained, written)


def open_store(grid: Grid, paths: Paths, resume: bool, observer: Observer) -> RunStore:
    """The run directory: with `resume`, the latest run of the same grid, else a new one."""
    results_dir = Path(paths.results_dir or default_results_dir())
    store = RunStore.latest_matching(results_dir, grid.fingerprint()) if resume else None
    if resume and store is None:
        observer.message("no earlier run of this grid to resume: starting a new one")
    store = store or RunStore.create(results_dir, grid.fingerprint())
    observer.message(f"run {store.run_id} -> {store.path}")
    return store
