"""The Ray executor: sharded cells on a local 2-CPU Ray instance give the local run's records."""

from __future__ import annotations

import pandas as pd
import pytest

from advbench.config import grid_from_dict
from advbench.run.ray_executor import run_grid_on_ray
from advbench.run.shards import shard_starts
from advbench.progress import Observer
from advbench.run import Paths, plan_grid, run_grid
from advbench.store import RunStore

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.subprocess  # a local Ray instance: worker processes

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
    plan = plan_grid(grid, digits, Paths(zoo_dir=trained_zoo))
    run_grid_on_ray(plan, distributed, observer=Observer(), shard_size=10)
    columns = [c for c in local.records().columns if c != "seconds"]
    pd.testing.assert_frame_equal(local.records()[columns], distributed.records()[columns])
    assert not list((distributed.path / "records").glob("*.part-*"))
    # a lost shard of one cell: resume runs only that shard and gets the same records back
    cell = plan.cells[1].id
    full = distributed.records()
    shards = pd.read_csv(distributed.record_path(cell))
    distributed.record_path(cell).unlink()
    distributed.write_part(cell, 0, shards.iloc[:10])
    run_grid_on_ray(plan, distributed, observer=Observer(), shard_size=10)
    pd.testing.assert_frame_equal(full[columns], distributed.records()[columns])


FIVE_OUTPUTS = """
import torch.nn as nn


def net():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 5))
"""


def test_ray_refuses_a_broken_defense_per_cell_and_saves_adversarials_as_a_local_run(tmp_path, digits, trained_zoo,
                                                                                    local_ray, monkeypatch):
    """The drift the local executor never had: on Ray a defense that cannot classify the data
    used to abort the run, and saving adversarial inputs was refused."""
    (tmp_path / "five_outputs.py").write_text(FIVE_OUTPUTS)
    monkeypatch.syspath_prepend(str(tmp_path))
    grid = grid_from_dict({"samples": 20, "batch_size": 10, "seed": 1, "save_adversarials": True,
                           "defenses": ["cnn", "python:five_outputs:net"],
                           "attacks": [{"name": "pgd-linf", "epsilons": [0.1, 0.2], "steps": 3}]})
    local = RunStore.create(tmp_path / "local", grid.fingerprint())
    run_grid(grid, digits, local, zoo_dir=trained_zoo)
    distributed = RunStore.create(tmp_path / "ray", grid.fingerprint())
    run_grid_on_ray(plan_grid(grid, digits, Paths(zoo_dir=trained_zoo)), distributed, observer=Observer(),
                    shard_size=10)
    on_ray, here = distributed.manifest(), local.manifest()
    assert set(on_ray.refused) == set(here.refused) == {"python:five_outputs:net__pgd-linf"}
    assert "but the data has 10 classes" in on_ray.refused["python:five_outputs:net__pgd-linf"]
    assert set(on_ray.finished) == {"cnn__pgd-linf"} and on_ray.timings.cells["cnn__pgd-linf"] > 0
    columns = [c for c in local.records().columns if c != "seconds"]
    pd.testing.assert_frame_equal(local.records()[columns], distributed.records()[columns])
    cell = "cnn__pgd-linf"
    saved = distributed.read_adversarials(cell, on_ray.adversarials[cell])
    expected = local.read_adversarials(cell, here.adversarials[cell])
    for key in ("samples", "epsilons", "adversarials"):
        assert saved[key].equal(expected[key]), key
