"""Adversarial-training defenses (issue 4): training steps, defaults, tanh bounds, transfer, sweep."""

from __future__ import annotations

import math

import pytest
import torch

from advbench import zoo
from advbench.attacks import make_attack
from advbench.config import AttackSpec, CellPlan, DefenseSpec
from advbench.data import DataInfo, Dataset
from advbench.defenses.adversarial_training import PGDATConfig, PGDAdversarialTraining
from advbench.defenses.pgn import tanh_perturb
from advbench.run import predict_batches, run_cell
from helpers import invoke


@pytest.fixture(scope="module")
def tiny_data(digits):
    return Dataset(digits.info, digits.train_x[:96], digits.train_y[:96], digits.test_x[:32], digits.test_y[:32])


@pytest.mark.parametrize("defense,options", [
    ("fgsm-at", {"epochs": 1}), ("fgsm-at", {"epochs": 1, "norm": "l2"}), ("pgd-at", {"epochs": 1, "quick": True}),
    ("madry", {"epochs": 1, "steps": 2}), ("pgn", {"epochs": 1, "ema_decay": 0.9}),
])
def test_each_defense_trains_and_round_trips(tmp_path, tiny_data, defense, options):
    card = zoo.train(defense, tiny_data, options=options, zoo_dir=tmp_path)
    assert card.seconds_per_epoch > 0
    model, loaded = zoo.load(card.name, tmp_path, info=tiny_data.info)
    from advbench.defenses.training import accuracy

    assert accuracy(model, tiny_data.test_x, tiny_data.test_y) == pytest.approx(card.clean_accuracy)  # the card tells the truth
    logits = model(tiny_data.test_x)
    assert logits.shape == (32, 10) and torch.isfinite(logits).all()
    assert loaded.hyperparameters == card.hyperparameters


def test_pgd_at_defaults_follow_the_mnist_challenge_and_scale():
    mnist = DataInfo("mnist", (1, 28, 28), 10)
    resolved = PGDAdversarialTraining.resolve_config(PGDATConfig(), mnist)
    assert (resolved.eps, resolved.steps, resolved.step_size) == (0.3, 40, 0.01)
    quick = PGDAdversarialTraining.resolve_config(PGDATConfig(quick=True), mnist)
    assert quick.steps == 5 and quick.step_size == pytest.approx(2.5 * 0.3 / 5) and quick.epochs == 10
    digits = PGDAdversarialTraining.resolve_config(PGDATConfig(eps=0.2, steps=8), DataInfo("digits", (1, 8, 8), 10))
    assert digits.step_size == pytest.approx(2.5 * 0.2 / 8)
    cifar = PGDAdversarialTraining.resolve_config(PGDATConfig(), DataInfo("cifar10", (3, 32, 32), 10))
    assert cifar.eps == pytest.approx(8 / 255) and cifar.step_size == pytest.approx(2 / 255)


@pytest.mark.parametrize("bounds", [(0.0, 1.0), (-1.0, 2.0)])
def test_tanh_change_of_variables_stays_in_bounds(bounds):
    low, high = bounds
    x = torch.linspace(low, high, 64).view(1, 1, 8, 8)
    for raw in (torch.full_like(x, 1e4), torch.full_like(x, -1e4), 50 * torch.randn_like(x)):
        out = tanh_perturb(x, raw, bounds)
        assert torch.isfinite(out).all() and out.min() >= low and out.max() <= high
    unchanged = tanh_perturb(x, torch.zeros_like(x), bounds)
    assert torch.allclose(unchanged, x, atol=1e-5 * (high - low))


def test_pgn_attack_is_one_generator_pass(tiny_pgn, tiny_cnn, digits):
    from advbench.attacks import AttackTarget

    x, y = digits.test_x[:16], digits.test_y[:16]
    target = AttackTarget(tiny_cnn, tiny_cnn, (0.0, 1.0), 10, load_model=lambda spec: tiny_pgn, dataset="digits")
    adv = make_attack("pgn")(target, x, y, []).adversarials[0]
    assert torch.allclose(adv, tiny_pgn.perturb(tiny_cnn, x, y, (0.0, 1.0)))
    assert adv.min() >= 0 and adv.max() <= 1


def test_transfer_attack_is_crafted_on_the_source(tiny_cnn, tiny_pgn, digits):
    """Examples come from the source model's gradients and are judged by the target defense."""
    from advbench.attacks import AttackTarget

    plan = CellPlan(DefenseSpec("pgn"), AttackSpec("fgsm", (0.1,), source="cnn"), (0.1,))
    idx, x, y = digits.test_subset(24, seed=0)
    clean = predict_batches(tiny_pgn, x, 12, torch.device("cpu"))
    records = run_cell(plan, make_attack("fgsm"), tiny_pgn, idx, x, y, clean, batch_size=12, bounds=(0.0, 1.0),
                       num_classes=10, device=torch.device("cpu"), source=tiny_cnn)
    crafted = make_attack("fgsm")(AttackTarget(tiny_cnn, tiny_cnn, (0.0, 1.0), 10), x, y, [0.1]).adversarials[0]
    assert records["adv_pred"].tolist() == tiny_pgn(crafted).argmax(1).tolist()
    own = make_attack("fgsm")(AttackTarget(tiny_pgn, tiny_pgn, (0.0, 1.0), 10), x, y, [0.1]).adversarials[0]
    assert not torch.equal(own, crafted)
    assert plan.attack.id == "fgsm (from cnn)"


def test_curve_command_on_a_two_point_grid(isolated):
    result = invoke(*[
        "sweep", "--defense", "cnn", "--param", "epochs=1,2", "--samples", "16", "--batch-size", "16",
        "--attack-opt", "steps=10", "--attack-opt", "binary_search_steps=2", "--zoo-dir", str(isolated / "z"),
        "--out", str(isolated / "out"),
    ])
    assert result.exit_code == 0, result.output
    import pandas as pd

    table = pd.read_csv(isolated / "out" / "robustness_curve.csv")
    assert list(table["value"]) == [1, 2] and table["rho_cw"].notna().all()
    cards = [zoo.read_card(name, isolated / "z") for name in table["model"]]
    assert table["benign_accuracy"].tolist() == pytest.approx([card.clean_accuracy for card in cards])
    assert (isolated / "out" / "robustness_curve.png").stat().st_size > 0
    assert (isolated / "z" / "cnn-digits-epochs=2.pt").exists()
    again = invoke(*["sweep", "--defense", "cnn", "--param", "epochs=1,2", "--samples", "16",
                                      "--batch-size", "16", "--attack-opt", "steps=10", "--attack-opt",
                                      "binary_search_steps=2", "--zoo-dir", str(isolated / "z")])
    assert again.exit_code == 0 and "reusing zoo entry cnn-digits-epochs=1" in again.stderr
    bad = invoke(*["sweep", "--defense", "cnn", "--param", "epochz=1"])
    assert bad.exit_code != 0 and "no option 'epochz'" in bad.output


def test_train_accepts_hyperparameters_as_options(isolated):
    result = invoke(*["train", "pgd-at", "--norm", "l2", "--eps", "0.5", "--steps", "2",
                                       "--epochs", "1", "--quick", "--zoo-dir", str(isolated / "z")])
    assert result.exit_code == 0, result.output
    card = zoo.list_cards(isolated / "z")[0]
    assert (card.norm, card.eps, card.hyperparameters["steps"], card.hyperparameters["quick"]) == ("l2", 0.5, 2, True)
    bad = invoke(*["train", "pgd-at", "--nrom", "l2", "--zoo-dir", str(isolated / "z")])
    assert bad.exit_code != 0 and "no option 'nrom'" in bad.output
    bad = invoke(*["train", "pgd-at", "--norm", "l3", "--zoo-dir", str(isolated / "z"), "--force"])
    assert bad.exit_code != 0 and "unknown norm" in bad.output


@pytest.mark.slow
def test_pgd_at_beats_cnn_under_pgd_by_twenty_points(tmp_path, digits):
    """Issue 4's acceptance check, at full size (a couple of minutes on 2 cores)."""
    from advbench.config import grid_from_dict
    from advbench.metrics import summarize
    from advbench.read_model import Run
    from advbench.run import run_grid
    from advbench.store import RunStore

    zoo.train("cnn", digits, zoo_dir=tmp_path)
    zoo.train("pgd-at", digits, options={"eps": 0.1}, zoo_dir=tmp_path)
    grid = grid_from_dict({"samples": 360, "batch_size": 120, "defenses": ["cnn", "pgd-at"],
                           "attacks": [{"name": "pgd-linf", "epsilons": [0.1], "steps": 40, "restarts": 5}]})
    store = RunStore.create(tmp_path / "results", grid.fingerprint())
    run_grid(grid, digits, store, zoo_dir=tmp_path)
    summary = summarize(Run.open([store])).set_index("defense")
    assert summary.loc["pgd-at", "robust_accuracy"] - summary.loc["cnn", "robust_accuracy"] >= 0.20
    assert not math.isnan(summary.loc["cnn", "robust_accuracy"])
