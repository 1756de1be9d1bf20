"""Across a cell's epsilons, a sample beaten at a smaller one keeps that verified example at the
larger ones (issue 22): never a higher robust accuracy, fewer model evaluations, and the records
say where each example was found."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from advbench.config import grid_from_dict
from advbench.metrics import summarize
from advbench.read_model import Run
from advbench.run import run_grid
from advbench.store import RunStore

SHIPPED_ZOO = Path(__file__).parents[2] / "zoo"
EPSILONS = [0.05, 0.1, 0.2, 0.3]


def records_of(tmp_path, digits, defense: str, carry: bool, attack: dict):
    grid = grid_from_dict({"samples": 80, "batch_size": 40, "seed": 1, "sanity": False, "reuse": False,
                           "carry_examples": carry, "defenses": [defense],
                           "attacks": [{**attack, "epsilons": EPSILONS}]})
    store = RunStore.create(tmp_path / ("carry" if carry else "every"), grid.fingerprint())
    run_grid(grid, digits, store, zoo_dir=SHIPPED_ZOO)
    return store.records(), summarize(Run.open([store])).set_index("epsilon")["robust_accuracy"]


@pytest.mark.parametrize("defense", ["cnn", "pgd-at"])
@pytest.mark.parametrize("attack", [{"name": "pgd-linf", "steps": 10, "random_start": False},
                                    {"name": "fgsm"}], ids=["pgd", "fgsm"])
def test_carrying_examples_never_raises_accuracy_and_saves_evaluations(tmp_path, digits, defense, attack):
    every, every_accuracy = records_of(tmp_path, digits, defense, False, attack)
    carried, carried_accuracy = records_of(tmp_path, digits, defense, True, attack)
    assert carried_accuracy.loc[EPSILONS[0]] == every_accuracy.loc[EPSILONS[0]]  # the first epsilon: the same run
    assert (carried_accuracy <= every_accuracy + 1e-12).all(), (carried_accuracy, every_accuracy)
    # examples carried from a smaller ball lie in it, and every record says where it was found
    assert (carried["found_at"] <= carried["epsilon"] + 1e-12).all()
    moved = carried[carried["found_at"] < carried["epsilon"]]
    assert len(moved) > 0 and (moved["linf"] <= moved["found_at"] + 1e-6).all()
    assert (moved["adv_pred"] != moved["label"]).all()  # only beaten samples are carried
    assert np.allclose(every["found_at"], every["epsilon"])
    assert carried["queries"].sum() < every["queries"].sum()


def test_a_single_epsilon_or_a_minimum_norm_cell_is_untouched(tmp_path, digits):
    grid = grid_from_dict({"samples": 20, "sanity": False, "defenses": ["cnn"],
                           "attacks": [{"name": "fgsm", "epsilons": [0.1]}, {"name": "deepfool-l2"}]})
    store = RunStore.create(tmp_path, grid.fingerprint())
    run_grid(grid, digits, store, zoo_dir=SHIPPED_ZOO)
    records = store.records()
    fixed = records[records["attack"] == "fgsm"]
    assert (fixed["found_at"] == 0.1).all()
    assert records.loc[records["attack"] == "deepfool-l2", "found_at"].isna().all()
