"""The Defense interface: surrogate gradients, EOT for stochastic inference, reject scores.

Toy defenses here stand in for the later issues (E-ABS's adaptive gradient, stochastic
generative classifiers, detectors with a reject score): each capability must reach
every attack through the runner with no special case.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from advbench.attacks import AttackKind, make_attack
from advbench.config import AttackSpec, CellPlan, DefenseSpec
from advbench.defenses.base import Defense, ExpectationOverTransformation
from advbench.registry import attacks
from advbench.run import attack_target, predict_batches, run_cell
from toys import ConfidenceDetector


class MaskedGradients(Defense):
    """Its inference gives no gradient (like an inner optimisation that attacks cannot
    differentiate), but it exposes a surrogate with the same outputs and honest gradients."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x.detach()) + 0.0 * x.flatten(1).sum(1, keepdim=True)

    def gradient_model(self):
        return self.inner


class MaskedWithoutSurrogate(MaskedGradients):
    def gradient_model(self):
        return self


class NoisyDefense(Defense):
    stochastic = True

    def __init__(self, inner: nn.Module, noise: float) -> None:
        super().__init__()
        self.inner, self.noise = inner, noise
        self.eot_samples = 3

    def forward(self, x):
        logits = self.inner(x)
        return logits + self.noise * torch.randn_like(logits)


def cell(defense, name, epsilons, digits, eot=None, **options):
    attack = make_attack(name, options)
    plan = CellPlan(DefenseSpec("toy"), AttackSpec(name, tuple(epsilons), eot=eot), tuple(epsilons))
    idx, x, y = digits.test_subset(48, seed=0)
    clean = predict_batches(defense, x, 16, torch.device("cpu"))
    return run_cell(plan, attack, defense, idx, x, y, clean, batch_size=16, bounds=(0.0, 1.0), num_classes=10,
                    device=torch.device("cpu"))


# the pgn attack replays a generator trained against another classifier: it promises no strength to test
GRADIENT_ATTACKS = [n for n in attacks.names() if getattr(attacks.get(n), "gradient_based", True) and n != "pgn"
                    and not attacks.get(n).requires]


@pytest.mark.parametrize("name", GRADIENT_ATTACKS)
def test_every_gradient_attack_uses_the_defense_surrogate(name, tiny_cnn, digits):
    # autoattack's standard version includes Square, which needs no gradients: test its gradient part
    options = {**attacks.get(name).fast_options, **({"version": "rand"} if name == "autoattack" else {})}
    epsilons = [0.3] if make_attack(name).norm == "linf" else [2.0]

    def fooled(defense):
        records = cell(defense.eval(), name, epsilons, digits, **options)
        fooled = (records.clean_pred == records.label) & (records.adv_pred != records.label)
        if attacks.get(name).kind is AttackKind.MINIMUM_NORM:
            fooled &= records[str(make_attack(name).norm)] <= epsilons[0]
        return fooled.mean()

    # the inference's gradient is zero: only the surrogate makes these attacks work
    with_surrogate, without = fooled(MaskedGradients(tiny_cnn.net)), fooled(MaskedWithoutSurrogate(tiny_cnn.net))
    assert with_surrogate >= without + 0.25, f"{name}: {with_surrogate:.0%} with surrogate vs {without:.0%} without"


def test_eot_averages_predictions_and_gradients(tiny_cnn, digits):
    defense = NoisyDefense(tiny_cnn.net, noise=50.0).eval()
    x = digits.test_x[:64]
    single = [defense.predict(x, samples=1).labels for _ in range(3)]
    assert not all(torch.equal(single[0], s) for s in single[1:]), "noise 50 should flip single-sample labels"
    wrapped = ExpectationOverTransformation(defense, 400)
    mean = wrapped(x)
    assert (mean - tiny_cnn(x)).abs().max() < 50.0 * 5 / math.sqrt(400)
    one = run_cell_queries(defense, digits, eot=1)
    five = run_cell_queries(defense, digits, eot=5)
    assert five == pytest.approx(5 * one)


def run_cell_queries(defense, digits, eot):
    records = cell(defense, "pgd-linf", [0.1], digits, eot=eot, steps=4)
    return records["queries"].iloc[0]


def test_reject_scores_are_recorded_for_clean_and_adversarial(tiny_cnn, digits):
    records = cell(ConfidenceDetector(tiny_cnn.net).eval(), "fgsm", [0.1], digits)
    assert records["clean_score"].notna().all() and records["adv_score"].notna().all()
    expected = -tiny_cnn.net(digits.test_x[records["sample"].to_numpy()]).max(dim=1).values
    assert torch.allclose(torch.tensor(records["clean_score"].to_numpy(), dtype=torch.float32), expected, atol=1e-5)


def test_attack_target_wraps_only_stochastic_defenses(tiny_cnn):
    plain, _ = attack_target(ConfidenceDetector(tiny_cnn.net), eot=5, bounds=(0, 1), num_classes=10)
    assert not isinstance(plain.gradient_model, ExpectationOverTransformation)
    noisy, _ = attack_target(NoisyDefense(tiny_cnn.net, 1.0), eot=5, bounds=(0, 1), num_classes=10)
    assert isinstance(noisy.gradient_model, ExpectationOverTransformation) and noisy.gradient_model.samples == 5
