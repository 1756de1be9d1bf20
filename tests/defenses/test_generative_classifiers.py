"""GFZ/DFZ, logit-based detection, and the ZOO attack."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from advbench.attacks import make_attack
from advbench.attacks.zoo_attack import coordinate_differences, hinge_on_log_probabilities
from advbench.defenses.latent_variable import DiscriminativeClassifier, GenerativeClassifier
from advbench.defenses.logit_detection import LogitDetection
from advbench.specs import DefenseRef
from advbench.errors import AdvbenchError
from advbench.progress import Observer
from advbench.run import attack_target
from advbench.defense_loading import resolve_defense


def tiny(cls, digits, epochs=2):
    config = cls.resolve_config(cls.Config(epochs=epochs, importance_samples=3, eot_samples=2), digits.info)
    model = cls.build(digits.info, config)
    model.fit(digits, config, seed=0, device=torch.device("cpu"), observer=Observer())
    return model.eval()


@pytest.mark.parametrize("cls", [GenerativeClassifier, DiscriminativeClassifier])
def test_latent_variable_classifiers_estimate_log_joint_per_class(cls, digits):
    model = tiny(cls, digits)
    x = digits.test_x[:6]
    logits = model(x)
    assert logits.shape == (6, 10) and torch.isfinite(logits).all()
    assert (logits < 0).all()  # log p(x, c) of 64 Bernoulli pixels is a log-probability
    assert model.stochastic and not torch.equal(logits, model(x))  # importance samples differ per call
    # the importance-weighted estimate is (in expectation) at least the ELBO of the true class
    torch.manual_seed(0)
    y = digits.test_y[:6]
    elbo = torch.stack([model.elbo(x, y) for _ in range(20)]).mean(0)
    estimate = torch.stack([model(x) for _ in range(20)]).mean(0).gather(1, y[:, None]).squeeze(1)
    assert (estimate >= elbo - 1.0).all()
    # gradients reach the input through the whole model (no surrogate needed)
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(xg)[:, 0].sum(), xg)
    assert grad.abs().sum() > 0


def test_alpha_search_hits_the_target_false_positive_rate_on_training_scores(digits, tiny_cnn):
    detector = LogitDetection(tiny_cnn, 10)
    x, y = digits.train_x[:800], digits.train_y[:800]
    achieved = detector.calibrate(x, y, 0.05)
    assert achieved == pytest.approx(0.05, abs=0.01)
    # recompute independently: correctly classified training inputs rejected by the rule
    logits = tiny_cnn(x)
    correct = logits.argmax(1) == y
    prediction = detector.predict(x[correct])
    rejected = (prediction.reject_score > detector.reject_threshold).float().mean().item()
    assert rejected == pytest.approx(0.05, abs=0.01)
    # the thresholds are delta_c = mu_c + alpha sigma_c of logit c over class c's correct inputs
    own = logits[correct & (y == 3), 3]
    assert detector.class_mean[3].item() == pytest.approx(own.mean().item(), rel=1e-4)
    assert detector.class_std[3].item() == pytest.approx(own.std().item(), rel=1e-4)


def test_detect_suffix_wraps_any_defense(digits, trained_zoo):
    model = resolve_defense("cnn+detect=0.1", digits, zoo_dir=trained_zoo)
    assert isinstance(model, LogitDetection) and model.reject_threshold is not None
    prediction = model.predict(digits.test_x[:50])
    assert prediction.reject_score is not None and prediction.reject_score.shape == (50,)
    assert DefenseRef.parse("gfz:x@1+detect") == DefenseRef("gfz", "x", seed=1, detect_rate=0.05)
    with pytest.raises(AdvbenchError, match="between 0 and 1"):
        DefenseRef.parse("cnn+detect=2")


def test_coordinate_differences_match_autograd_on_a_smooth_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 4), nn.Tanh(), nn.Linear(4, 3))
    x = torch.rand(3, 1, 4, 4, dtype=torch.float64)
    model = model.double()
    y = torch.tensor([0, 1, 2])

    def loss_of(inputs: torch.Tensor, owners: torch.Tensor) -> torch.Tensor:
        return hinge_on_log_probabilities(model(inputs), y[owners], confidence=100.0)

    coordinates = torch.stack([torch.randperm(16)[:5] for _ in range(3)])
    estimate = coordinate_differences(loss_of, x, coordinates, h=1e-5)
    xg = x.clone().requires_grad_(True)
    (exact,) = torch.autograd.grad(loss_of(xg, torch.arange(3)).sum(), xg)
    assert torch.allclose(estimate, exact.flatten(1).gather(1, coordinates), atol=1e-6)


def test_zoo_succeeds_on_a_plain_cnn_inside_the_box_and_counts_queries(digits, tiny_cnn):
    x, y = digits.test_x[:16], digits.test_y[:16]
    correct = tiny_cnn(x).argmax(1) == y
    x, y = x[correct], y[correct]
    target, counters = attack_target(tiny_cnn, 1, digits.info.bounds, 10)
    attack = make_attack("zoo", {"iterations": 60, "coordinates": 32, "step_size": 0.05})
    adv = attack(target, x, y, []).adversarials[0]
    assert adv.min() >= 0 and adv.max() <= 1
    assert (tiny_cnn(adv).argmax(1) != y).all()
    # every iteration: 2 probes per coordinate plus one check of the current point, per sample
    assert counters[1].count == len(x) * 60 * (2 * 32 + 1)
    assert counters[0].count == 0  # never touched the gradient model


def test_finite_differences_on_a_stochastic_model_use_common_random_numbers():
    """A model that adds fresh noise on every call: with the same noise for both probes, the
    symmetric difference recovers the noise-free derivative exactly."""
    weight = torch.arange(16, dtype=torch.float64).view(1, 16)

    class Noisy(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            flat = x.flatten(1) + torch.randn_like(x.flatten(1))
            return torch.cat([flat @ weight.T, torch.zeros(len(x), 1, dtype=x.dtype)], 1)

    model = Noisy()
    x = torch.rand(2, 1, 4, 4, dtype=torch.float64)
    coordinates = torch.tensor([[0, 5, 9], [15, 3, 1]])
    estimate = coordinate_differences(lambda inputs, owners: model(inputs)[:, 0], x, coordinates, h=1e-3)
    assert torch.allclose(estimate, weight[0, coordinates], atol=1e-6)
