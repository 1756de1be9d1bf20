"""Across a cell's epsilons, a sample beaten at a smaller one keeps that verified example wherever
the attack at a larger one failed on it (issue 22): never a higher robust accuracy, for any attack,
and the records say where each example was found."""

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
def test_carrying_examples_never_raises_accuracy(tmp_path, digits, defense, attack):
    every, every_accuracy = records_of(tmp_path, digits, defense, False, attack)
    carried, carried_accuracy = records_of(tmp_path, digits, defense, True, attack)
    assert carried_accuracy.loc[EPSILONS[0]] == every_accuracy.loc[EPSILONS[0]]  # the first epsilon: the same run
    assert (carried_accuracy <= every_accuracy + 1e-12).all(), (carried_accuracy, every_accuracy)
    # examples carried from a smaller ball lie in it, and every record says where it was found
    assert (carried["found_at"] <= carried["epsilon"] + 1e-12).all()
    moved = carried[carried["found_at"] < carried["epsilon"]]
    assert (moved["linf"] <= moved["found_at"] + 1e-6).all()
    assert (moved["adv_pred"] != moved["label"]).all()  # only beaten samples are carried
    assert np.allclose(every["found_at"], every["epsilon"])
    assert carried["queries"].sum() == every["queries"].sum()  # the attack itself runs as without carrying


@pytest.mark.parametrize("attack", [{"name": "pgd-linf", "steps": 10}, {"name": "square", "queries": 100}],
                         ids=["pgd-random-start", "square"])
def test_random_attacks_are_never_higher_either(tmp_path, digits, attack):
    """Regression: attacking only the samples still standing changed a random attack's draws, and
    34 rows of the 240-sample demo rose (3 ALL rows); carrying after the attack cannot raise one."""
    every, every_accuracy = records_of(tmp_path, digits, "pgd-at", False, attack)
    carried, carried_accuracy = records_of(tmp_path, digits, "pgd-at", True, attack)
    assert (carried_accuracy <= every_accuracy + 1e-12).all(), (carried_accuracy, every_accuracy)


def test_a_single_epsilon_or_a_minimum_norm_cell_is_untouched(tmp_path, digits):
    grid = grid_from_dict({"samples": 20, "sanity": False, "defenses": ["cnn"],
                           "attacks": [{"name": "fgsm", "epsilons": [0.1]}, {"name": "deepfool-l2"}]})
    store = RunStore.create(tmp_path, grid.fingerprint())
    run_grid(grid, digits, store, zoo_dir=SHIPPED_ZOO)
    records = store.records()
    fixed = records[records["attack"] == "fgsm"]
    assert (fixed["found_at"] == 0.1).all()
    assert records.loc[records["attack"] == "deepfool-l2", "found_at"].isna().all()


def test_an_attack_that_fails_in_the_larger_ball_keeps_the_smaller_balls_examples(digits):
    """A toy attack that only works at the smallest epsilon: every sample it beat there keeps that
    example (found_at says so) and the larger epsilon reads the same accuracy, not the clean one."""
    import torch

    from advbench import zoo
    from advbench.attacks import make_attack
    from advbench.attacks.base import FixedEpsilonAttack
    from advbench.config import AttackSpec, CellPlan, DefenseSpec
    from advbench.defenses.base import ModelDefense
    from advbench.run import predict_batches, run_cell

    class SmallBallOnly(FixedEpsilonAttack):
        def run(self, target, x, y, *, epsilon):
            return make_attack("fgsm").run(target, x, y, epsilon=epsilon) if epsilon < 0.06 else x.clone()

    defense = ModelDefense(zoo.load("cnn-digits", SHIPPED_ZOO, info=digits.info)[0]).eval()
    _, x, y = digits.test_subset(60, 0)
    clean = predict_batches(defense, x, 60, torch.device("cpu"))
    plan = CellPlan(DefenseSpec("cnn"), AttackSpec("small", (0.05, 0.1)), (0.05, 0.1))
    records = run_cell(plan, SmallBallOnly(), defense, torch.arange(60), x, y, clean, batch_size=30, bounds=(0.0, 1.0),
                       num_classes=10, device=torch.device("cpu"), carry_examples=True)
    small, large = (records[records["epsilon"] == e].set_index("sample") for e in (0.05, 0.1))
    beaten = (small["adv_pred"] != small["label"]) & (small["clean_pred"] == small["label"])
    assert beaten.sum() > 0
    assert (large.loc[beaten, "found_at"] == 0.05).all() and (large.loc[beaten, "adv_pred"] != large.loc[beaten, "label"]).all()
    assert (large.loc[~beaten, "found_at"] == 0.1).all()
