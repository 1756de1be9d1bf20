"""ABS / E-ABS: adaptive gradients, EOT, certified bounds, batched inference, end to end."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from advbench.attacks import make_attack
from advbench.defenses import ExpectationOverTransformation
from advbench.defenses.analysis_by_synthesis import AnalysisBySynthesis, EfficientABS
from advbench.defenses.latent_inference import (InferenceSettings, LatentInference, certified_l2_bound,
                                                looped_exact_inference, squared_error)
from advbench.progress import Observer
from advbench.run import attack_target
from advbench.defense_loading import resolve_defense


def tiny(cls, digits, **overrides):
    config = cls.resolve_config(dataclasses.replace(cls.Config(epochs=2, prototypes=64, inference_steps=5),
                                                    **overrides), digits.info)
    model = cls.build(digits.info, config)
    model.fit(digits, config, seed=0, device=torch.device("cpu"), observer=Observer())
    return model.eval()


@pytest.fixture(scope="module")
def eabs(digits):
    return tiny(EfficientABS, digits)


def test_adaptive_gradient_is_autograd_through_a_fixed_optimum(eabs, digits):
    eabs.select_mode("exact")  # deterministic inference: the same z* on every call
    try:
        x = digits.test_x[:6].clone().requires_grad_(True)
        logits = eabs.gradient_model()(x)
        (grad,) = torch.autograd.grad(logits[:, 3].sum(), x)
        fit = eabs.fit_latents(x.detach())
        # autograd with z* held fixed, through the decoders, and the closed form of Eq. 8
        x_ref = x.detach().clone().requires_grad_(True)
        ref = -(squared_error(x_ref, eabs.decoders(fit.z)) + fit.latent_cost)
        (ref_grad,) = torch.autograd.grad(ref[:, 3].sum(), x_ref)
        assert torch.allclose(grad, ref_grad, atol=1e-5)
        assert torch.allclose(grad, -2 * (x.detach() - fit.images[:, 3]), atol=1e-5)
        assert torch.allclose(logits.detach(), ref.detach(), atol=1e-4)
    finally:
        eabs.select_mode("variational")


def test_eot_averages_predictions_and_gradients_of_the_stochastic_inference(eabs, digits):
    assert eabs.stochastic and eabs.eot_samples == 5
    x = digits.test_x[:8]
    torch.manual_seed(1)
    singles = torch.stack([eabs(x) for _ in range(4)])
    assert (singles[0] != singles[1]).any()  # one-sample variational estimates differ between calls
    torch.manual_seed(1)
    averaged = ExpectationOverTransformation(eabs, 4)(x)
    assert torch.allclose(averaged, singles.mean(0), atol=1e-5)
    # gradients are averaged too: the EOT gradient is the mean of the per-sample Eq. 8 gradients
    xg = x.clone().requires_grad_(True)
    torch.manual_seed(2)
    (eot_grad,) = torch.autograd.grad(ExpectationOverTransformation(eabs, 3)(xg)[:, 0].sum(), xg)
    torch.manual_seed(2)
    grads = [torch.autograd.grad(eabs(xg)[:, 0].sum(), xg)[0] for _ in range(3)]
    assert torch.allclose(eot_grad, torch.stack(grads).mean(0), atol=1e-5)
    torch.manual_seed(3)
    assert eabs.predict(x).logits.shape == (8, 10)


def test_certified_bound_matches_hand_computation():
    # d = (1, 3, 2), y = 0, l_y = 1, ||x - G_y|| = 1: k=1 gives 8/8 = 1, k=2 gives 3/6 = 0.5
    bound = certified_l2_bound(torch.tensor([[1.0, 3.0, 2.0]]), torch.tensor([1.0]), torch.tensor([1.0]),
                               torch.tensor([0]))
    assert bound.item() == pytest.approx(0.5)
    # a closer wrong class than the true one: nothing certified
    assert certified_l2_bound(torch.tensor([[2.0, 1.0]]), torch.tensor([4.0]), torch.tensor([2.0]),
                              torch.tensor([0])).item() == 0.0


class _LinearDecoders(nn.Module):
    """G_k(z) = a_k + z * u_k on 2x2 images, one latent dimension, unit directions u_k."""

    def __init__(self) -> None:
        super().__init__()
        self.offsets = torch.tensor([[0.0, 0.0, 0.0, 0.0], [3.0, 0.0, 0.0, 0.0]])
        self.directions = torch.tensor([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (B, K, 1) -> (B, K, 1, 2, 2)
        images = self.offsets + z * self.directions
        return images.view(*z.shape[:2], 1, 2, 2)


def test_certified_bound_with_a_linear_decoder_equals_the_geometric_margin():
    """With affine decoders and beta = 0, d_k is the distance to a line and Eq. 7 reduces to
    (d_k - d_y) / 2: the bound is then exact (the midpoint between the two manifolds)."""
    decoders = _LinearDecoders()
    inference = LatentInference(decoders, latent=1, k=2, latent_cost=lambda z: 0.5 * z.pow(2).sum(-1), beta=0.0,
                                settings=InferenceSettings(prototypes=200, steps=200, lr=0.05))
    x = torch.tensor([[0.5, 1.0, 2.0, 0.0]]).view(1, 1, 2, 2)
    fit = inference.exact(x)
    # distance to {a_k + z u_k}: the residual orthogonal to u_k
    d0 = math.sqrt(0.5 ** 2 + 2.0 ** 2)           # class 0 line spans coordinate 1
    d1 = math.sqrt((0.5 - 3.0) ** 2 + 1.0 ** 2)   # class 1 line spans coordinate 2
    distances = fit.reconstruction.sqrt()
    assert distances[0, 0].item() == pytest.approx(d0, abs=1e-3)
    assert distances[0, 1].item() == pytest.approx(d1, abs=1e-3)
    bound = certified_l2_bound(distances, fit.loss[:, 0], distances[:, 0], torch.tensor([0]))
    assert bound.item() == pytest.approx((d1 - d0) / 2, abs=1e-3)


def test_batched_inference_agrees_with_the_looped_reference(eabs, digits):
    eabs.select_mode("exact")
    try:
        x = digits.test_x[:3]
        batched = eabs.inference.exact(x).loss
        looped = looped_exact_inference([eabs.decoders.single(k) for k in range(10)], eabs.inference.prototypes, x,
                                        eabs.point_cost, beta=eabs.config.beta, settings=eabs.inference.settings)
        assert torch.allclose(batched, looped, rtol=1e-3, atol=1e-3)
    finally:
        eabs.select_mode("variational")


def test_ablation_switches_build_the_table_5_variants(digits):
    a_abs = tiny(AnalysisBySynthesis, digits, adversarial=True, epochs=1)
    assert a_abs.discriminator is not None and a_abs.encoder.groups == 10 and a_abs.mode == "exact"
    d_abs = tiny(AnalysisBySynthesis, digits, discriminative=True, epochs=1)
    assert d_abs.discriminator is None and d_abs.encoder.groups == 1
    d_abs.select_mode("variational")  # DV-ABS: the same checkpoint with variational inference
    assert d_abs.stochastic and d_abs(digits.test_x[:4]).shape == (4, 10)


def test_certified_radius_is_zero_where_misclassified(eabs, digits):
    x, y = digits.test_x[:40], digits.test_y[:40]
    radius = eabs.certified_radius(x, y)
    assert radius.shape == (40,) and (radius >= 0).all()
    wrong = eabs.inference.exact(x).loss.argmin(1) != y
    assert (radius[wrong] == 0).all()


def test_gradient_free_attacks_find_adversarials_on_a_plain_cnn(digits, tiny_cnn):
    cnn = tiny_cnn
    x, y = digits.test_x[:20], digits.test_y[:20]
    target, _ = attack_target(cnn, 1, digits.info.bounds, digits.info.num_classes)
    boundary = make_attack("boundary", {"steps": 200})(target, x, y, [])
    adv = boundary.adversarials[0]
    assert adv.min() >= 0 and adv.max() <= 1
    fooled = cnn(adv).argmax(1) != y
    assert fooled.float().mean() >= 0.9
    estimated = make_attack("pgd-est", {"steps": 20, "samples": 20})(target, x, y, [0.3]).adversarials[0]
    assert (estimated - x).abs().max() <= 0.3 + 1e-6
    assert (cnn(estimated).argmax(1) != y).float().mean() >= 0.5


def test_estimated_gradient_matches_autograd_on_a_smooth_model():
    from advbench.attacks.gradient_free import EstimatedGradientModel

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3), nn.Tanh())
    x = torch.rand(4, 1, 4, 4, requires_grad=True)
    (exact,) = torch.autograd.grad(model(x)[:, 1].sum(), x)
    (estimate,) = torch.autograd.grad(EstimatedGradientModel(model, samples=4000, sigma=1e-3)(x)[:, 1].sum(), x)
    cosine = nn.functional.cosine_similarity(exact.flatten(1), estimate.flatten(1)).min()
    assert cosine > 0.9


def test_large_l2_epsilon_drives_eabs_accuracy_to_zero(digits):
    """The paper's check that the adaptive attack works: at a budget far beyond the data's
    class separation, the shipped E-ABS checkpoint loses (almost) all accuracy."""
    model = resolve_defense("eabs", digits, zoo_dir=Path(__file__).parents[2] / "zoo")
    model.inference.settings.steps = 10  # a cheaper inference than the card's 20 steps: the test's budget
    x, y = digits.test_x[:12], digits.test_y[:12]
    target, _ = attack_target(model, 2, digits.info.bounds, digits.info.num_classes)
    torch.manual_seed(0)
    adv = make_attack("pgd-l2", {"steps": 10})(target, x, y, [5.0]).adversarials[0]
    accuracy = (model.predict(adv).labels == y).float().mean().item()
    assert accuracy <= 0.1


def cli(args: list[str]):
    from click.testing import CliRunner

    from advbench.cli import main

    return CliRunner().invoke(main, args)


def test_attack_eabs_with_pgd_l2_end_to_end(tmp_path):
    zoo = tmp_path / "zoo"
    trained = cli(["train", "eabs", "--epochs", "1", "--prototypes", "50", "--inference-steps", "3",
                   "--zoo-dir", str(zoo)])
    assert trained.exit_code == 0, trained.output
    result = cli(["attack", "eabs", "--attack", "pgd-l2", "--eps", "0.5", "--steps", "3", "--eot", "2",
                  "--samples", "12", "--format", "csv", "--zoo-dir", str(zoo), "--results-dir", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert "eabs" in result.output and "pgd-l2" in result.output
    runs = list((tmp_path / "r").iterdir())
    manifest = json.loads((runs[0] / "manifest.json").read_text())
    assert manifest["defenses"]["eabs"]["stochastic"] is True
    assert manifest["cells"][0]["eot"] == 2


# ---------------------------------------------------------------- inference under attack

def refinement_steps(monkeypatch) -> list[tuple[int, int]]:
    """(rows, steps) of every refinement the inference runs from now on."""
    from advbench.defenses import latent_inference

    calls: list[tuple[int, int]] = []
    for name in ("_refine_points", "_refine_distribution"):
        original = getattr(latent_inference.LatentInference, name)

        def recorded(self, x, *args, _original=original):
            calls.append((len(x), args[-1]))
            return _original(self, x, *args)
        monkeypatch.setattr(latent_inference.LatentInference, name, recorded)
    return calls


def test_warm_started_inference_continues_from_the_previous_step(eabs, digits, monkeypatch):
    from advbench.defenses.analysis_by_synthesis import WarmStartedInference

    eabs.select_mode("exact", "warm")  # deterministic: the full inference is reproducible
    try:
        view = eabs.gradient_model()
        assert isinstance(view, WarmStartedInference) and view.steps == eabs.warm_steps
        calls = refinement_steps(monkeypatch)
        x = digits.test_x[:6]
        assert torch.equal(view(x), eabs(x))  # a first call is the full inference
        first_choice = view._previous[tuple(x.shape)][1][1]
        moved = (x + 0.001 * torch.randn_like(x)).clamp(0, 1)
        moved[0] = digits.test_x[10]  # one input replaced: it moved far
        warm = view(moved)
        # rows whose every class kept its best start continue warm; the others run the full steps
        choice = eabs.inference.best_prototypes(moved[1:], eabs.inference.beta)[2]
        steady = int((choice == first_choice[1:]).all(1).sum())
        full_steps = eabs.inference.settings.steps
        expected = [(steady, eabs.warm_steps)] * bool(steady) + [(5 - steady, full_steps)] * bool(5 - steady)
        assert steady > 0 and calls[-len(expected) - 1:] == expected + [(1, full_steps)]
        assert torch.equal(warm[0], eabs(moved[:1])[0])  # the far row: full inference
        full = eabs(moved[1:])
        assert (warm[1:] - full).abs().max() <= 0.05 * full.abs().max()
    finally:
        eabs.select_mode("variational")


def test_warm_variational_inference_restarts_the_variance_its_start_gives(eabs, digits, monkeypatch):
    """Carried over an attack's steps, q(z)'s variance would keep shrinking (every class would
    fit better than under the defense's own inference): a warm step refines the previous mean
    (where the class kept its best start) from the log-variance that start gives."""
    from advbench.defenses import latent_inference

    seen = []
    original = latent_inference.LatentInference._refine_distribution

    def spy(self, x, mean, log_var, kl_cost, steps):
        seen.append((mean.clone(), log_var.clone()))
        return original(self, x, mean, log_var, kl_cost, steps)
    monkeypatch.setattr(latent_inference.LatentInference, "_refine_distribution", spy)
    eabs.select_mode("variational", "warm")
    view = eabs.gradient_model()
    eabs.select_mode("variational")
    x = digits.test_x[:1]
    view(x)
    optimised = view._previous[tuple(x.shape)][1][0]
    initial_log_var = seen[0][1]
    view(x.clone())  # the same input: every class keeps its start
    warm_mean, warm_log_var = seen[-1]
    assert torch.equal(warm_mean, optimised)
    assert torch.allclose(warm_log_var, initial_log_var)  # the start's variance, not the optimised one


def test_warm_inference_under_attack_is_one_mode_argument_away(digits):
    from advbench.errors import AdvbenchError

    model = tiny(EfficientABS, digits, epochs=1)
    assert model.gradient_model() is model  # the default: the full inference at every attack step
    model.select_mode("variational", "warm")
    assert model.gradient_model().steps == model.warm_steps > 0
    model.select_mode("variational", "full")
    assert model.gradient_model() is model
    model.select_mode("variational", "7")
    assert model.gradient_model().steps == 7
    with pytest.raises(AdvbenchError, match="mode argument"):
        model.select_mode("variational", "fast")


def test_warm_started_attack_on_eabs_is_verified_and_batches_do_not_share_state(eabs, digits, monkeypatch):
    """Every batch gets its own warm-started view (so shards reproduce whole cells), the
    attack runs its steps warm, and its adversarials pass the runner's verification."""
    from advbench.config import AttackSpec, CellPlan, DefenseSpec
    from advbench.run import predict_batches, run_cell

    attack = make_attack("pgd-l2", {"steps": 3})
    plan = CellPlan(DefenseSpec("eabs"), AttackSpec("pgd-l2", (0.05,)), (0.05,))
    # the same four inputs twice: a view kept across batches would warm-start the second batch
    indices = torch.arange(8)
    x, y = digits.test_x[:4].repeat(2, 1, 1, 1), digits.test_y[:4].repeat(2)
    clean = predict_batches(eabs, x, 4, torch.device("cpu"))
    calls = refinement_steps(monkeypatch)
    kwargs = dict(batch_size=4, bounds=digits.info.bounds, num_classes=10, device=torch.device("cpu"), seed=0)
    eabs.select_mode("variational", "warm")
    try:
        whole = run_cell(plan, attack, eabs, indices, x, y, clean, **kwargs)
        assert (len(x[:4]) * eabs.eot_samples, eabs.warm_steps) in calls  # attack steps ran warm
        second = run_cell(plan, attack, eabs, indices[4:], x[4:], y[4:],
                          predict_batches(eabs, x[4:], 4, torch.device("cpu")), offset=4, **kwargs)
    finally:
        eabs.select_mode("variational")
    columns = ["sample", "adv_pred", "l2"]
    assert whole.iloc[4:][columns].reset_index(drop=True).equals(second[columns].reset_index(drop=True))


def test_eot_in_one_batch_averages_independent_copies():
    class Noisy(nn.Module):
        def forward(self, x):
            return x.flatten(1) + torch.randn(len(x), x[0].numel())

    x = torch.rand(3, 1, 2, 2)
    torch.manual_seed(0)
    batched = ExpectationOverTransformation(Noisy(), 4, batched=True)(x)
    torch.manual_seed(0)
    draws = x.flatten(1).repeat(4, 1) + torch.randn(12, 4)
    assert torch.allclose(batched, draws.view(4, 3, 4).mean(0))
    many = ExpectationOverTransformation(Noisy(), 400, batched=True)(x)
    assert (many - x.flatten(1)).std() < 0.1  # the mean of 400 independent draws, not of one
