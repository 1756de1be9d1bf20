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
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from .attacks import Attack
from .config import CellPlan, Grid, subset_rule
from .contract import Manifest
from .data import Dataset, load_dataset
from .errors import AdvbenchError, RunInterrupted
from .progress import Observer
from .report import Report, build_report, write_artifacts
from .runner import pick_device, plan_cells, run_grid, use_threads
from .sanity import with_sanity_attacks
from .stats import DEFAULT_ALPHA
from .store import RunStore, default_results_dir
from .zoo import Card, DefensePlan, default_zoo_dir, plan_defense, train_missing


@dataclass(frozen=True)
class Paths:
    """Where results, checkpoints and datasets live (None: the defaults / environment)."""

    results_dir: Path | None = None
    zoo_dir: Path | None = None
    data_dir: Path | None = None
    download: bool = False


@dataclass(frozen=True)
class PreparedGrid:
    """A grid checked against the registry, the zoo and the data; nothing written yet."""

    grid: Grid
    data: Dataset
    cells: list[tuple[CellPlan, Attack]]
    defenses: list[DefensePlan]
    device: torch.device


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


def prepare(grid: Grid, paths: Paths = Paths()) -> PreparedGrid:
    """Validate everything about `grid` (with its sanity attacks added) without writing anything."""
    grid = with_sanity_attacks(grid, Path(paths.zoo_dir or default_zoo_dir()))
    grid = replace(grid, subset=subset_rule(grid))  # the manifest records the choice
    grid = with_robustbench_threats(grid)
    data = load_dataset(grid.dataset, paths.data_dir, paths.download)
    cells = plan_cells(grid, data)
    defenses = [plan_defense(d.spec, data.info, zoo_dir=paths.zoo_dir, weights=d.weights, train_options=dict(d.train))
                for d in grid.defenses]
    sources = {a.source for a in grid.attacks if a.source}
    defenses += [plan_defense(source, data.info, zoo_dir=paths.zoo_dir) for source in sorted(sources)]
    return PreparedGrid(grid, data, cells, defenses, pick_device(grid.device))


def with_robustbench_threats(grid: Grid) -> Grid:
    """`robustbench:MODEL` without a threat model gets the norm of the grid's attacks (when
    they all use one), keeping its name as the label so tables and restrictions still match."""
    from .attacks import make_attack
    from .norms import parse_norm
    from .specs import DefenseRef

    refs = [DefenseRef.parse(d.spec) for d in grid.defenses]
    if not any(r.robustbench and r.threat is None for r in refs):
        return grid
    norms = {parse_norm(make_attack(a.name, dict(a.options)).norm) for a in grid.attacks}
    if len(norms) != 1:
        return grid  # plan_defense asks for an explicit threat model
    (norm,) = norms
    defenses = tuple(replace(d, spec=str(replace(r, threat=norm.label)), label=d.label or d.spec)
                     if r.robustbench and r.threat is None else d for d, r in zip(grid.defenses, refs))
    return replace(grid, defenses=defenses)


def evaluate(grid: Grid, *, paths: Paths = Paths(), resume: bool = False, executor: str = "local",
             address: str | None = None, shard_size: int = 0, fail_fast: bool = False,
             observer: Observer | None = None, alpha: float = DEFAULT_ALPHA, false_alarm: float = 0.05,
             artifacts: bool = True, fresh: bool = False, holm: bool = True) -> Evaluation:
    """Validate `grid`, train missing models, run every unfinished cell and report.

    With `resume`, the latest run of the same grid continues (finished cells whose records
    still verify are kept). A cell that fails is recorded with its reason and the grid goes on,
    unless `fail_fast`. `executor="ray"` runs cells as sample shards on a Ray cluster. Cells an
    earlier run computed on the same content (`advbench.reuse`) are copied, unless `fresh` (or the
    grid says `reuse = false`)."""
    observer = observer or Observer()
    if executor not in ("local", "ray"):
        raise AdvbenchError(f"unknown executor {executor!r}: use local or ray")
    if shard_size < 0:
        raise AdvbenchError("shard size must be positive")
    if executor == "ray":
        from .executors import import_ray

        import_ray()  # a missing extra fails before anything is written
        if grid.save_adversarials:
            raise AdvbenchError("saving adversarial inputs is not supported with --executor ray; run locally")
    prepared = prepare(grid, paths)
    grid = prepared.grid
    use_threads(grid.threads, observer)
    started = time.perf_counter()
    trained = train_missing(prepared.defenses, prepared.data, zoo_dir=paths.zoo_dir, device=prepared.device,
                            observer=observer)
    training_seconds = time.perf_counter() - started
    results_dir = Path(paths.results_dir or default_results_dir())
    store = RunStore.latest_matching(results_dir, grid.fingerprint()) if resume else None
    if resume and store is None:
        observer.message("no earlier run of this grid to resume: starting a new one")
    store = store or RunStore.create(results_dir, grid.fingerprint())
    observer.message(f"run {store.run_id} -> {store.path}")
    try:
        if executor == "ray":
            from .executors import run_grid_on_ray

            manifest = run_grid_on_ray(grid, prepared.data, store, zoo_dir=paths.zoo_dir, data_dir=paths.data_dir,
                                       download=paths.download, observer=observer, plans=prepared.cells,
                                       address=address, shard_size=shard_size, reuse=grid.reuse and not fresh)
        else:
            manifest = run_grid(grid, prepared.data, store, zoo_dir=paths.zoo_dir, observer=observer,
                                plans=prepared.cells, fail_fast=fail_fast, reuse=grid.reuse and not fresh)
    except KeyboardInterrupt:
        raise RunInterrupted(store.kept_work()) from None
    if trained:
        with store.lock():
            manifest = store.manifest()
            manifest.timings["training"] = round(training_seconds, 3)
            store.write_manifest(manifest)
    report, written = None, []
    if manifest.finished:
        report = build_report([store], alpha=alpha, false_alarm=false_alarm, holm=holm)
        if artifacts:
            written = write_artifacts(report, store.path)
    return Evaluation(store, manifest, report, trained, written)
