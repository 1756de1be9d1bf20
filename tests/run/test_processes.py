"""The process-pool executor: cells as sample shards in spawned workers give the local run's
records, resume only the missing batches, and refuse in-memory models."""

from __future__ import annotations

import pandas as pd
import pytest

from advbench.config import grid_from_dict
from advbench.errors import AdvbenchError
from advbench.evaluation import evaluate
from advbench.progress import Observer
from advbench.run import Paths, plan_grid, run_grid
from advbench.run.device import worker_threads
from advbench.run.processes import run_grid_in_processes
from advbench.store import RunStore

pytestmark = pytest.mark.subprocess  # spawned worker processes

GRID = {  # two defenses, fixed-epsilon and minimum-norm attacks, two batches each
    "samples": 20, "batch_size": 10, "seed": 5, "defenses": ["cnn", "pgn"], "sanity": False,
    "attacks": [
        {"name": "pgd-linf", "epsilons": [0.1, 0.2], "steps": 3},
        {"name": "fmn-linf", "epsilons": [0.1], "steps": 5},
    ],
}


def test_workers_give_the_local_records_and_resume_only_missing_batches(tmp_path, digits, trained_zoo, tiny_pgn):
    grid = grid_from_dict(GRID)
    local = RunStore.create(tmp_path / "local", grid.fingerprint())
    run_grid(grid, digits, local, zoo_dir=trained_zoo)
    pooled = RunStore.create(tmp_path / "pool", grid.fingerprint())
    plan = plan_grid(grid, digits, Paths(zoo_dir=trained_zoo))
    manifest = run_grid_in_processes(plan, pooled, observer=Observer(), workers=2)
    assert len(manifest.finished) == len(plan.cells) and not manifest.refused
    assert manifest.threads == worker_threads(2, None)  # what each worker ran with, not the driver's default
    columns = [c for c in local.records().columns if c != "seconds"]
    pd.testing.assert_frame_equal(local.records()[columns], pooled.records()[columns])
    assert not list((pooled.path / "records").glob("*.part-*"))
    # a cell interrupted after its first batch: the resume runs only its second batch
    cell = plan.cells[0].id
    full = pooled.records()
    batches = pd.read_csv(pooled.record_path(cell))
    pooled.record_path(cell).unlink()
    manifest.finished.pop(cell)
    pooled.write_manifest(manifest)
    pooled.write_part(cell, 0, batches.iloc[:10])
    run_grid_in_processes(plan, pooled, observer=Observer(), workers=2)
    pd.testing.assert_frame_equal(full[columns], pooled.records()[columns])


def test_in_memory_models_refuse_workers(tmp_path, digits):
    import torch.nn as nn

    grid = grid_from_dict({**GRID, "defenses": ["mine"], "workers": 2})
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    with pytest.raises(AdvbenchError, match="workers must be 1"):
        evaluate(grid, models={"mine": model}, data=digits, paths=Paths(results_dir=tmp_path))


@pytest.mark.parametrize("workers", [0, "two"])
def test_bad_workers_name_the_key(workers):
    with pytest.raises(AdvbenchError, match="workers must be a positive integer"):
        grid_from_dict({**GRID, "workers": workers})
