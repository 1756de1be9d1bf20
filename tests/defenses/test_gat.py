"""GAT (issue 5): the asymmetric loss, stacked vs sequential detectors, modes and thresholds,
the attack objectives of paper 001 Eq. 9-13, and the binary search of Appendix B."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from advbench import defense_loading, zoo
from advbench.attacks import AttackTarget, make_attack
from advbench.attacks.gat_attacks import OBJECTIVES
from advbench.defenses.gat import asymmetric_loss
from advbench.defenses.networks import classifier_for_shape
from advbench.defenses.stacked import StackedNetwork
from helpers import invoke


def test_asymmetric_loss_on_a_hand_checked_batch():
    positives = torch.tensor([[2.0, 0.0]])
    negatives = torch.tensor([[-1.0, 3.0]])
    softplus = lambda v: math.log1p(math.exp(v))  # noqa: E731  BCE(z, 1) = softplus(-z), BCE(z, 0) = softplus(z)
    expected = 0.5 * ((softplus(-2.0) + softplus(0.0)) / 2 + (softplus(-1.0) + softplus(3.0)) / 2)
    assert asymmetric_loss(positives, negatives).item() == pytest.approx(expected)


def test_stacked_and_sequential_detectors_give_the_same_outputs_and_gradients():
    torch.manual_seed(0)
    stacked = StackedNetwork(lambda: classifier_for_shape((1, 8, 8), 1), 4)
    x = torch.rand(6, 4, 1, 8, 8)
    target = torch.randint(0, 2, (6, 4)).float()
    loss = nn.functional.binary_cross_entropy_with_logits(stacked(x), target, reduction="sum")
    loss.backward()
    for k in range(4):
        single = stacked.detector(k)
        single_loss = nn.functional.binary_cross_entropy_with_logits(single(x[:, k]).squeeze(1), target[:, k],
                                                                     reduction="sum")
        single_loss.backward()
        stacked_grads = [p.grad[k] for p in stacked.parameters()]
        for ours, reference in zip(stacked_grads, [p.grad for p in single.parameters()]):
            assert torch.allclose(ours, reference, atol=1e-5)


def test_detectors_on_one_shared_input_equal_them_on_k_copies_of_it():
    torch.manual_seed(0)
    stacked = StackedNetwork(lambda: classifier_for_shape((1, 8, 8), 1), 4)
    x = torch.rand(6, 1, 8, 8, requires_grad=True)
    shared = stacked.same_input(x)
    copies = x.unsqueeze(1).expand(-1, 4, 1, 8, 8)
    assert torch.allclose(shared, stacked(copies), atol=1e-5)
    assert torch.allclose(shared, torch.cat([stacked.detector(k)(x) for k in range(4)], 1), atol=1e-5)
    (grad,) = torch.autograd.grad(shared.sum(), x)
    (reference,) = torch.autograd.grad(stacked(copies).sum(), x)
    assert torch.allclose(grad, reference, atol=1e-5)


def test_detector_slices_round_trip():
    stacked = StackedNetwork(lambda: classifier_for_shape((1, 8, 8), 1), 3)
    saved = stacked.detector_state(1)
    with torch.no_grad():
        for p in stacked.parameters():
            p.add_(1.0)
    stacked.load_detector_state(1, saved)
    assert all(torch.equal(saved[name], stacked.detector_state(1)[name]) for name in saved)
    assert not torch.equal(stacked.detector_state(0)["layers.0.weight"], saved["layers.0.weight"])


def test_init_from_classifier_copies_logit_subnetworks():
    torch.manual_seed(0)
    classifier = classifier_for_shape((1, 8, 8), 3)
    stacked = StackedNetwork(lambda: classifier_for_shape((1, 8, 8), 1), 3)
    stacked.init_from_classifier(classifier)
    x = torch.rand(5, 1, 8, 8)
    assert torch.allclose(stacked.same_input(x), classifier(x), atol=1e-5)


def test_attack_objectives_on_toy_logits():
    f = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0]])
    h = torch.tensor([[0.5, -1.0, 2.0], [1.0, -3.0, 0.0]])
    y = torch.tensor([0, 0])
    assert OBJECTIVES["classifier"](f, h, y).tolist() == [1.0 - 3.0, 2.0 - 0.0]
    assert OBJECTIVES["detectors"](f, h, y).tolist() == [2.0, 0.0]
    # Eq. 11: extra logit = (-max_{j!=y} h + 1) * max f; Eq. 12 negated: max_{i!=y} f - max(f, extra)
    extra = [(-2.0 + 1) * 3.0, (-0.0 + 1) * 2.0]
    assert OBJECTIVES["combined"](f, h, y).tolist() == pytest.approx([1.0 - max(3.0, extra[0]), 2.0 - max(2.0, extra[1])])
    # Eq. 13: sample 0 is classified right -> classifier margin; sample 1 is wrong -> detectors
    assert OBJECTIVES["switch"](f, h, y).tolist() == [-2.0, 0.0]


class LinearDetector(nn.Module):
    """Two classes: z_0 = 0, z_1 = w . x + b (a linear detector for class 1)."""

    def __init__(self, w: torch.Tensor, b: float) -> None:
        super().__init__()
        self.w, self.b = w, b

    def forward(self, x):
        z1 = x.flatten(1) @ self.w + self.b
        return torch.stack([torch.zeros_like(z1), z1], dim=1)


def test_binary_search_finds_the_known_minimal_c_on_a_linear_detector():
    torch.manual_seed(0)
    w = 0.05 * torch.randn(64)
    x = torch.full((1, 1, 8, 8), 0.5)
    model = LinearDetector(w, b=-(x.flatten() @ w).item())  # z_1(x) = 0, so the box never binds
    y = torch.tensor([0])
    threshold = 0.05  # accept when z_1 > T; the reject score is -max z

    def reject_score(v):
        return -model(v).amax(dim=1)

    target = AttackTarget(model, model, (0.0, 1.0), 2, reject_score=reject_score, reject_threshold=-threshold)
    # unconstrained optimum of z_1 - c||d||^2 is d = w / 2c, raising z_1 by ||w||^2 / 2c; a false positive
    # needs z_1(x') > max(T, z_0) = T, so the largest effective c is ||w||^2 / (2 (T - z_1(x)))
    z1 = model(x)[0, 1].item()
    c_star = w.pow(2).sum().item() / (2 * (threshold - z1))
    attack = make_attack("bsearch-l2", {"upper": 4 * c_star, "depth": 16, "steps": 300, "step_size": 0.01})
    adv, consts = attack.search(target, x, y)
    assert consts.item() == pytest.approx(c_star, rel=0.05)
    assert (adv - x).norm().item() == pytest.approx(w.norm().item() / (2 * c_star), rel=0.05)
    assert bool(attack.false_positive(target, adv, y))


def test_gat_modes_thresholds_and_round_trip(tiny_gat, digits, trained_zoo):
    x = digits.test_x[:50]
    tiny_gat.select_mode("generative")
    pred = tiny_gat.predict(x)
    z = tiny_gat.detectors.same_input(x)
    assert torch.equal(pred.labels, z.argmax(1))
    assert torch.allclose(pred.reject_score, -z.max(1).values)
    assert tiny_gat.reject_threshold == pytest.approx(-tiny_gat.thresholds[0].item())
    tiny_gat.select_mode("integrated")
    pred = tiny_gat.predict(x)
    routed = z.gather(1, tiny_gat.classifier(x).argmax(1, keepdim=True)).squeeze(1)
    assert torch.equal(pred.labels, tiny_gat.classifier(x).argmax(1)) and torch.allclose(pred.reject_score, -routed)
    tiny_gat.select_mode("generative", "1.5")
    assert tiny_gat.reject_threshold == -1.5
    tiny_gat.select_mode("ovr")
    assert tiny_gat.predict(x).reject_score is None and tiny_gat.reject_threshold is None
    tiny_gat.select_mode("generative")
    loaded = defense_loading.resolve_defense("gat-digits:integrated", digits, zoo_dir=trained_zoo)
    assert loaded.mode == "integrated" and loaded.reject_threshold == pytest.approx(-tiny_gat.thresholds[1].item())


def test_threshold_accepts_95_percent_of_clean_validation_inputs(digits):
    from advbench.defenses.gat import GATConfig, GenerativeAdversarialTraining

    model = GenerativeAdversarialTraining(digits.info, GATConfig())
    x = digits.train_x[:200]
    model._set_thresholds(x)
    model.select_mode("generative")
    accepted = (model.predict(x).reject_score <= model.reject_threshold).float().mean().item()
    assert accepted == pytest.approx(0.95, abs=0.01)


def test_train_gat_command_and_detector_table(isolated):


    result = invoke(*["train", "gat", "--norm", "linf", "--eps", "0.3", "--epochs", "1",
                                       "--steps", "2", "--classifier-epochs", "1", "--val-samples", "10",
                                       "--zoo-dir", str(isolated / "z")])
    assert result.exit_code == 0, result.output
    card = zoo.read_card("gat-digits", isolated / "z")
    assert (card.norm, card.eps, card.hyperparameters["steps"]) == ("linf", 0.3, 2)
    table = invoke(*["detectors", "gat-digits", "--config", "linf:0.3:3:0.1", "--config",
                                      "linf:0.3:3:0.1:2:sign", "--samples", "10", "--zoo-dir", str(isolated / "z"),
                                      "--out", str(isolated / "auc.csv")])
    assert table.exit_code == 0, table.output
    import pandas as pd

    aucs = pd.read_csv(isolated / "auc.csv")
    assert list(aucs.columns) == ["attack", *[f"d{k}" for k in range(10)], "mean"] and len(aucs) == 2
    assert aucs["mean"].tolist() == pytest.approx(aucs[[f"d{k}" for k in range(10)]].mean(axis=1).tolist())
    bad = invoke(*["detectors", "cnn", "--zoo-dir", str(isolated / "z")])
    assert bad.exit_code != 0


def test_gat_attacks_run_in_grids_and_are_skipped_on_plain_classifiers(tiny_gat, isolated):

    from advbench.store import list_runs

    grid = isolated / "grid.toml"
    grid.write_text('samples = 20\nbatch_size = 20\nsanity = false\ndefenses = ["gat-digits:integrated", "cnn"]\n'
                    '[[attacks]]\nname = "gat-linf"\nobjective = "switch"\nsteps = 5\nepsilons = [0.3]\n'
                    '[[attacks]]\nname = "pgd-linf"\nloss = "max-other"\nsteps = 5\nepsilons = [0.3]\n')
    result = invoke(*["run", str(grid)])
    assert result.exit_code == 0, result.output
    assert "skipped cnn__gat-linf: needs a gat model" in result.stderr
    assert "Reject option" in result.stdout
    (run,) = list_runs(isolated / "results")
    assert set(run.records()["cell"]) == {"gat-digits:integrated__gat-linf", "gat-digits:integrated__pgd-linf",
                                          "cnn__pgd-linf"}
    assert run.manifest().skipped == {"cnn__gat-linf": "needs a gat model (classifier and detectors)"}
    assert (run.path / "reject.png").stat().st_size > 0


def test_targeted_grid_command(tiny_gat, isolated):


    out = isolated / "targeted.png"
    result = invoke(*["targeted", "gat-digits", "cnn", "--steps", "3", "--per-class", "1",
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    import matplotlib.image

    assert matplotlib.image.imread(out).shape[0] > 100


def test_paper_001_table_1_settings_on_28x28_and_quick_digits():
    from advbench.data import DataInfo
    from advbench.defenses.gat import GATConfig, GenerativeAdversarialTraining as GAT

    mnist = DataInfo("mnist", (1, 28, 28), 10)
    for norm, eps, steps, step, val in [("linf", 0.3, 100, 0.01, 200), ("linf", 0.5, 100, 0.01, 200),
                                        ("l2", 2.5, 100, 0.1, 200), ("l2", 5.0, 200, 0.1, 200)]:
        resolved = GAT.resolve_config(GATConfig(norm=norm, eps=eps), mnist)
        assert (resolved.steps, resolved.step_size, resolved.val_steps) == (steps, step, val)
    quick = GAT.resolve_config(GATConfig(quick=True), DataInfo("digits", (1, 8, 8), 10))
    assert (quick.eps, quick.steps, quick.epochs) == (0.3, 5, 25)
    assert quick.step_size == pytest.approx(2.5 * 0.3 / 5)
