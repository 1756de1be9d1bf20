"""Attack-failure flags: each one triggered by a model or attack built for it, none on an honest run."""

from __future__ import annotations

import pandas as pd

from advbench.check import check_grid
from advbench.config import grid_from_dict
from advbench.run import run_grid
from advbench.store import RunStore
from advbench.contract import AttackKind, CellInfo
from advbench.norms import Norm
from advbench.read_model import Run
from advbench.trust import attack_failure_flags
from helpers import invoke

ROOT_ZOO = __import__("pathlib").Path(__file__).parents[2] / "zoo"


def flags_of(tmp_path, digits, grid) -> pd.DataFrame:
    store = RunStore.create(tmp_path, grid.fingerprint())
    run_grid(grid, digits, store, zoo_dir=ROOT_ZOO)
    return attack_failure_flags(Run.open([store]))


def small_grid(defense: str, attacks: list[dict], samples: int = 40) -> object:
    return grid_from_dict({"samples": samples, "batch_size": samples, "seed": 0, "defenses": [defense],
                           "attacks": attacks})


def test_gradient_masking_step_function_raises_dead_gradients_and_black_box_flags(tmp_path, digits):
    grid = small_grid("python:toys:quantized", [
        {"name": "pgd-l2", "epsilons": [1.5], "steps": 10, "random_start": False},
        {"name": "boundary", "epsilons": [1.5], "steps": 200},
    ])
    flags = flags_of(tmp_path, digits, grid)
    fired = set(flags["flag"])
    assert "dead-gradients" in fired and "beaten-by-black-box" in fired
    assert set(flags.loc[flags["flag"] == "dead-gradients", "attack"]) == {"pgd-l2"}


def test_undeclared_randomness_is_flagged(tmp_path, digits):
    flags = flags_of(tmp_path, digits, small_grid("python:toys:secretly_random",
                                                  [{"name": "fgsm", "epsilons": [0.1]}]))
    assert "undeclared-randomness" in set(flags["flag"])


def test_too_few_steps_leave_accuracy_at_a_box_sized_epsilon_and_an_unconverged_attack(tmp_path, digits):
    grid = small_grid("cnn", [
        {"name": "pgd-linf", "label": "weak", "epsilons": [0.2, 1.0], "steps": 1, "step_size": 0.01,
         "random_start": False},
        {"name": "pgd-linf", "label": "strong", "epsilons": [0.2, 1.0], "steps": 40, "step_size": 0.01,
         "random_start": False, "restarts": 1},
        {"name": "deepfool-l2", "label": "deepfool-1-step", "steps": 1, "overshoot": 0.0, "epsilons": [1.0]},
    ])
    flags = flags_of(tmp_path, digits, grid)
    by_attack = flags.groupby("attack")["flag"].apply(set)
    assert "large-epsilon-accuracy" in by_attack["weak"]
    assert "not-converged" in by_attack["weak"]
    assert "unbounded-attack-incomplete" in by_attack["deepfool-1-step"]
    assert "strong" not in by_attack.index


def test_more_effort_raising_accuracy_is_flagged_from_records():
    """Records of a defense whose accuracy rose with more restarts (what a stateful or random
    defense attacked without EOT produces)."""
    rows = []
    for cell, steps, robust in (("d__pgd", 10, 12), ("d__pgd-more", 40, 24)):
        for sample in range(40):
            rows.append({"cell": cell, "defense": "d", "attack": cell[3:], "norm": "linf", "kind": "fixed-epsilon",
                         "epsilon": 0.1, "sample": sample, "label": 1, "clean_pred": 1, "clean_score": float("nan"),
                         "adv_pred": 1 if sample < robust else 2, "adv_score": float("nan"), "l2": 0.5,
                         "linf": 0.1, "x_l2": 3.0, "seconds": 0.0, "queries": 1.0, "gradients": 1.0,
                         "certified_l2": float("nan"), "access": "gradient", "grad_norm": 1.0})
    cells = {cell_id: CellInfo(cell_id, "d", cell_id[3:], "pgd-linf", Norm.LINF, AttackKind.FIXED_EPSILON, (0.1,),
                               {"steps": steps, "restarts": restarts})
             for cell_id, steps, restarts in (("d__pgd", 10, 1), ("d__pgd-more", 40, 2))}
    flags = attack_failure_flags(Run.from_records(pd.DataFrame(rows), infos=cells))
    assert list(flags["flag"]) == ["more-effort-more-accuracy"]
    assert flags["attack"].iloc[0] == "pgd-more"


def test_check_grid_on_an_honest_cnn_raises_no_flag(tmp_path, digits):
    grid = check_grid("python:toys:honest", dataset="digits", norm="linf", eps=0.1, samples=40, steps=20,
                      batch_size=40, seed=0, device="cpu")
    flags = flags_of(tmp_path, digits, grid)
    assert flags.empty, flags.to_string()


def test_check_command_exits_nonzero_on_a_masked_model(tmp_path):


    result = invoke(*["check", "python:toys:quantized", "--samples", "30", "--steps", "5",
                                       "--results-dir", str(tmp_path), "--format", "csv"])
    assert result.exit_code == 1, result.output
    assert "dead-gradients" in result.output
