"""The Ray executor: sharded cells on a local 2-CPU Ray instance give the local run's records."""

from __future__ import annotations

import pandas as pd
import pytest

from advbench.config import grid_from_dict
from advbench.executors import run_grid_on_ray, shard_starts
from advbench.progress import Observer
from advbench.runner import plan_cells, run_grid
from advbench.store import RunStore

ray = pytest.importorskip("ray")

GRID = {  # a deterministic and a stochastic defense; fixed-epsilon and minimum-norm attacks
    "samples": 20, "batch_size": 10, "seed": 5, "defenses": ["cnn", "gfz"],
    "attacks": [
        {"name": "pgd-l2", "epsilons": [0.5, 1.0], "steps": 3, "eot": 2},
        {"name": "deepfool-l2", "epsilons": [0.5], "steps": 5, "candidates": 3},
    ],
}


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_shards_hold_whole_batches():
    assert shard_starts(40, 10, 15) == [(0, 20), (20, 40)]
    assert shard_starts(45, 10, 0) == [(0, 10), (10, 20), (20, 30), (30, 40), (40, 45)]


def test_ray_run_matches_local_run_and_resumes_only_missing_shards(tmp_path, digits, trained_zoo, local_ray):
    from advbench import zoo

    zoo.train("gfz", digits, options={"epochs": 1, "importance_samples": 2, "eot_samples": 2}, zoo_dir=trained_zoo)
    grid = grid_from_dict(GRID)
    local = RunStore.create(tmp_path / "local", grid.fingerprint())
    run_grid(grid, digits, local, zoo_dir=trained_zoo)
    distributed = RunStore.create(tmp_path / "ray", grid.fingerprint())
    plans = plan_cells(grid, digits)
    run_grid_on_ray(grid, digits, distributed, zoo_dir=trained_zoo, data_dir=None, download=False,
                    observer=Observer(), plans=plans, shard_size=10)
    columns = [c for c in local.records().columns if c != "seconds"]
    pd.testing.assert_frame_equal(local.records()[columns], distributed.records()[columns])
    assert not list((distributed.path / "records").glob("*.part-*"))
    # a lost shard of one cell: resume runs only that shard and gets the same records back
    cell = plans[1][0].id
    full = distributed.records()
    shards = pd.read_csv(distributed.record_path(cell))
    distributed.record_path(cell).unlink()
    distributed.write_part(cell, 0, shards.iloc[:10])
    run_grid_on_ray(grid, digits, distributed, zoo_dir=trained_zoo, data_dir=None, download=False,
                    observer=Observer(), plans=plans, shard_size=10)
    pd.testing.assert_frame_equal(full[columns], distributed.records()[columns])
