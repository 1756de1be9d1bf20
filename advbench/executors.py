"""Running a grid on Ray: cells split into sample shards, each a Ray task.

Each task loads the data and its defense itself, runs its shard with the same per-batch
seeds as a local run, and writes its records atomically as a part file of the run store;
the driver joins the parts of a finished cell into the cell file. A crashed worker loses
only its shard, and `--resume` reruns only shards without a part file. Models are trained
(or found in the zoo) by the driver before any task starts, so workers only load them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .attacks import Attack
from .config import CellPlan, Grid
from .data import Dataset, load_dataset
from .errors import AdvbenchError
from .progress import Observer
from .contract import Manifest
from .reuse import CellIndex
from .runner import (ModelCache, clean_predictions, content_key, describe_defense, grid_samples, open_manifest,
                     pick_device, plan_cells, reuse_earlier_cell, run_cell, skip_unsupported)
from .store import RunStore

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


def run_shard(grid: Grid, cell_index: int, start: int, stop: int, *, data_dir: str | None, download: bool,
              zoo_dir: str | None, store_path: str) -> tuple[str, int]:
    """One Ray task: samples [start, stop) of one cell, written as a part file."""
    data = load_dataset(grid.dataset, Path(data_dir) if data_dir else None, download)
    plan, attack = plan_cells(grid, data)[cell_index]
    device = pick_device(grid.device)
    models = ModelCache(data, zoo_dir=Path(zoo_dir) if zoo_dir else None, device=device, observer=Observer())
    defense = models.get(plan.defense.spec, plan.defense.weights, plan.defense.train)
    source = models.get(plan.attack.source) if plan.attack.source else None
    indices, inputs, labels = grid_samples(grid, data)
    shard = slice(start, stop)
    clean = clean_predictions(defense, plan.defense.id, inputs[shard], labels[shard], grid, device, offset=start)
    records = run_cell(plan, attack, defense, indices[shard], inputs[shard], labels[shard], clean,
                       batch_size=grid.batch_size, bounds=data.info.bounds, num_classes=data.info.num_classes,
                       device=device, source=source, load_model=models.get, dataset=data.info.name,
                       seed=grid.seed, offset=start)
    RunStore(Path(store_path)).write_part(plan.id, start, records)
    return plan.id, start


def run_grid_on_ray(grid: Grid, data: Dataset, store: RunStore, *, zoo_dir: Path | None, data_dir: Path | None,
                    download: bool, observer: Observer, plans: list[tuple[CellPlan, Attack]],
                    address: str | None = None, shard_size: int = 0, reuse: bool = True) -> Manifest:
    """The Ray counterpart of `runner.run_grid`: the driver describes defenses, skips
    unsupported cells and reuses earlier ones as a local run does; tasks run shards; the
    driver joins them. Adversarial inputs are not saved on Ray (the front door refuses it)."""
    ray = import_ray()
    device = pick_device(grid.device)
    with store.lock():
        manifest = open_manifest(store, grid, plans, device, observer)
        indices, inputs, _ = grid_samples(grid, data)
        models = ModelCache(data, zoo_dir=zoo_dir, device=device, observer=observer)
        earlier = CellIndex(store.path.parent, exclude=store.path) if reuse else None
        todo: list[tuple[int, CellPlan]] = []
        for index, (plan, attack) in enumerate(plans):
            if plan.id in manifest.finished or plan.id in manifest.skipped:
                continue
            defense = models.get(plan.defense.spec, plan.defense.weights, plan.defense.train)
            key = (plan.defense.spec, plan.defense.weights, plan.defense.train)
            if plan.defense.id not in manifest.defenses or manifest.defenses[plan.defense.id].weights_sha256 is None:
                describe_defense(manifest, plan.defense.id, defense, plan.defense.spec,
                                 inputs[:grid.batch_size].to(device), observer, models.checkpoints[key],
                                 data.info.num_classes)
            source = models.get(plan.attack.source) if plan.attack.source else None
            if skip_unsupported(manifest, plan, attack, source or defense, data, observer):
                continue
            manifest.content_keys[plan.id] = content_key(plan, attack, grid, data.info.name, indices, manifest,
                                                         defense, source)
            if earlier is None or not reuse_earlier_cell(manifest, store, plan.id, earlier, False, observer):
                todo.append((index, plan))
        store.write_manifest(manifest)
        if len(todo) < len(plans):
            observer.message(f"{len(plans) - len(todo)} of {len(plans)} cells finished or skipped already")
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        task = ray.remote(num_gpus=1 if device.type == "cuda" else 0)(run_shard)
        shards = shard_starts(len(inputs), grid.batch_size, shard_size or grid.batch_size)
        pending = [task.remote(grid, index, start, stop, data_dir=str(data_dir) if data_dir else None,
                               download=download, zoo_dir=str(zoo_dir) if zoo_dir else None,
                               store_path=str(store.path))
                   for index, plan in todo for start, stop in shards if not store.has_part(plan.id, start)]
        with observer.task("shards on ray", len(pending)) as advance:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                ray.get(done)  # a task's exception stops the run here; finished shards stay on disk
                advance(1)
        for _, plan in todo:
            manifest.finished[plan.id] = store.merge_parts(plan.id, [start for start, _ in shards])
            store.write_manifest(manifest)
            store.drop_parts(plan.id)
    return manifest
