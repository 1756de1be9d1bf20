"""Every registered attack stays in its ball and the box; minimum-norm attacks match closed forms."""

from __future__ import annotations

import pytest
import torch

from advbench.attacks import AttackKind, AttackTarget, make_attack
from advbench.attacks.verify import verify_adversarials
from advbench.errors import AdvbenchError, AttackVerificationError
from advbench.norms import Norm
from advbench.registry import attacks



def fast(name: str) -> dict:
    """The attack's own cheap settings for smoke tests (`Attack.fast_options`)."""
    return dict(attacks.get(name).fast_options)


def target_for(model, num_classes=10, load_model=None, surfaces=None):
    return AttackTarget(model, model, (0.0, 1.0), num_classes, load_model=load_model, dataset="digits",
                        surfaces=surfaces or {})


# the pgn attack replays a generator trained against another classifier: no strength is promised here
NO_STRENGTH_CLAIM = {"pgn"}
# attacks written for one family of defenses run against a (tiny) model of that family
NEEDS_GAT = {n for n in attacks.names() if attacks.get(n).requires}


def test_every_expensive_built_in_attack_declares_fast_options():
    """The registry-wide test below runs every attack at its fast options: an attack that
    spends more than 60 evaluations per input by default must declare them."""
    slow = [name for name in attacks.names() if attacks.entry(name).origin == "built-in"
            and make_attack(name, {}).expected_evaluations() > 61 and not attacks.get(name).fast_options]
    assert slow == []


@pytest.mark.parametrize("name", attacks.names())
def test_every_attack_stays_in_ball_and_bounds(name, tiny_cnn, tiny_pgn, tiny_gat, digits):
    torch.manual_seed(0)
    attack = make_attack(name, fast(name))
    x, y = digits.test_x[:32], digits.test_y[:32]
    epsilons = [0.1, 0.3] if attack.norm is Norm.LINF else [0.5, 1.5]
    if name in NEEDS_GAT:
        from advbench.run import attack_target

        target, _ = attack_target(tiny_gat, 1, (0.0, 1.0), 10)
        victim = tiny_gat
    else:
        target, victim = target_for(tiny_cnn, load_model=lambda spec: tiny_pgn), tiny_cnn
    out = attack(target, x, y, epsilons)
    if attack.kind is AttackKind.FIXED_EPSILON:
        assert len(out.adversarials) == len(epsilons)
        for eps, adv in zip(epsilons, out.adversarials):
            verify_adversarials(x, adv, epsilon=eps, norm=attack.norm, bounds=(0, 1), attack=name)
    else:
        (adv,) = out.adversarials
        verify_adversarials(x, adv, epsilon=None, norm=attack.norm, bounds=(0, 1), attack=name)
    if name in NO_STRENGTH_CLAIM:
        return
    fooled = victim(out.adversarials[-1]).argmax(1) != y
    assert fooled.float().mean() > 0.5, f"{name} fooled only {fooled.float().mean():.0%} of a weak digits model"


@pytest.mark.parametrize("name,options", [
    ("deepfool-l2", {}),
    ("cw-l2", {"steps": 300, "binary_search_steps": 10, "step_size": 0.01, "abort_early": False}),
    ("ddn", {"steps": 300, "gamma": 0.02}),
])
def test_minimum_l2_matches_linear_closed_form(name, options, linear_setup):
    model, x, y = linear_setup
    adv = make_attack(name, options)(target_for(model), x, y, []).adversarials[0]
    assert (model(adv).argmax(1) != y).all(), f"{name} failed on a linear model"
    found = (adv - x).flatten(1).norm(dim=1)
    optimal = model.minimal_l2(x)
    assert torch.allclose(found, optimal, rtol=0.05), f"{name}: found {found} vs optimal {optimal}"


def test_deepfool_linf_matches_linear_closed_form(linear_setup):
    model, x, y = linear_setup
    adv = make_attack("deepfool-linf")(target_for(model), x, y, []).adversarials[0]
    found = (adv - x).flatten(1).abs().amax(dim=1)
    assert (model(adv).argmax(1) != y).all()
    assert torch.allclose(found, model.minimal_linf(x), rtol=0.05)


@pytest.mark.parametrize("name,norm", [("pgd-linf", "linf"), ("pgd-l2", "l2")])
def test_pgd_fools_linear_model_exactly_above_the_minimal_norm(name, norm, linear_setup):
    """Just above the closed-form minimal norm PGD must succeed; just below it cannot."""
    model, x, y = linear_setup
    minimal = model.minimal_linf(x) if norm == "linf" else model.minimal_l2(x)
    attack = make_attack(name, {"steps": 100, "restarts": 2})
    for i in range(4):
        xi, yi, m = x[i:i + 1], y[i:i + 1], minimal[i].item()
        above, below = attack(target_for(model), xi, yi, [1.05 * m, 0.95 * m]).adversarials
        assert model(above).argmax(1).item() != yi.item()
        assert model(below).argmax(1).item() == yi.item()


def test_fgsm_is_one_signed_step(linear_setup):
    model, x, y = linear_setup
    adv = make_attack("fgsm")(target_for(model), x, y, [0.01]).adversarials[0]
    assert torch.allclose((adv - x).abs(), torch.full_like(x, 0.01), atol=1e-6)


def test_defense_loss_is_used_when_loss_is_auto(linear_setup):
    """A defense-provided loss replaces cross-entropy: here one that pushes towards class 0."""
    model, x, y = linear_setup
    towards_zero = lambda logits, labels: logits[:, 0] - logits.amax(dim=1)  # noqa: E731
    target = AttackTarget(model, model, (0.0, 1.0), 10, loss=towards_zero)
    adv = make_attack("pgd-linf", {"steps": 50})(target, x, y, [0.3]).adversarials[0]
    assert (model(adv).argmax(1) == 0).float().mean() > 0.9


def test_verification_rejects_out_of_ball_and_out_of_bounds():
    x = torch.full((2, 1, 8, 8), 0.5)
    with pytest.raises(AttackVerificationError, match="left its linf ball"):
        verify_adversarials(x, x + 0.2, epsilon=0.1, norm=Norm.LINF, bounds=(0, 1), attack="cheat")
    with pytest.raises(AttackVerificationError, match="left its l2 ball"):
        verify_adversarials(x, x + 0.2, epsilon=1.0, norm=Norm.L2, bounds=(0, 1), attack="cheat")
    with pytest.raises(AttackVerificationError, match="data bounds"):
        verify_adversarials(x, x + 0.6, epsilon=None, norm=Norm.L2, bounds=(0, 1), attack="cheat")
    with pytest.raises(AttackVerificationError, match="non-finite"):
        verify_adversarials(x, x * float("nan"), epsilon=None, norm=Norm.L2, bounds=(0, 1), attack="cheat")
    verify_adversarials(x, x + 0.1 + 5e-6, epsilon=0.1, norm=Norm.LINF, bounds=(0, 1), attack="tolerance")


def test_unknown_attack_option_is_named():
    with pytest.raises(AdvbenchError, match="no option 'stpes'"):
        make_attack("pgd-linf", {"stpes": 3})
    with pytest.raises(AdvbenchError, match="not a valid int"):
        make_attack("pgd-linf", {"steps": "many"})


@pytest.mark.parametrize("name, epsilons", [("pgd-linf", [0.05, 0.1, 0.2, 0.3]), ("pgd-l2", [0.5, 1.0, 2.0]),
                                            ("fgsm", [0.0, 0.1, 0.2]), ("fgm", [0.5, 1.0]), ("mim", [0.1, 0.3])])
def test_all_epsilons_in_one_batched_run_equal_runs_per_epsilon(tiny_cnn, digits, name, epsilons, monkeypatch):
    from advbench.attacks import make_attack
    from advbench.run import attack_target

    target, _ = attack_target(tiny_cnn, 1, digits.info.bounds, 10)
    x, y = digits.test_x[:120], digits.test_y[:120]
    attack = make_attack(name, {})
    attack.batch_epsilons = True  # on by default only on a GPU
    calls = []
    original = attack.run_epsilons

    def spy(*args):
        calls.append(args[-1])
        return original(*args)

    attack.run_epsilons = spy
    torch.manual_seed(0)
    together = attack(target, x, y, epsilons)
    assert calls == [[e for e in epsilons if e]]  # one batched run for every non-zero epsilon
    attack.run_epsilons = lambda *args: None
    torch.manual_seed(0)
    apart = attack(target, x, y, epsilons)
    for eps, a, b in zip(epsilons, together.adversarials, apart.adversarials):
        # equal up to float rounding: beaten samples leave the batch, and a forward on another batch
        # size may round the last bit differently (before active sets: bit for bit)
        assert torch.allclose(a, b, atol=1e-5), eps
        assert torch.equal(tiny_cnn(a).argmax(1), tiny_cnn(b).argmax(1)), eps
    for a, b in zip(together.details, apart.details):
        # the loss trace to float rounding: beaten samples leave the batch, and a forward on another
        # batch size may round differently in the last bit (the examples themselves are equal)
        assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-6, equal_nan=True)
                                            for k in a if torch.is_tensor(a[k]))


def test_pgd_l2_is_at_least_as_strong_as_torchattacks_on_the_same_samples(tiny_cnn, digits):
    """Our L2 random start once sat on the ball's surface, which left PGD-L2 0.5-3 points weaker
    than torchattacks' on the digits models (bench/pgd_crosscheck.py)."""
    torchattacks = pytest.importorskip("torchattacks")
    from advbench.run import attack_target

    x, y = digits.test_x[:200], digits.test_y[:200]
    target, _ = attack_target(tiny_cnn, 1, digits.info.bounds, 10)
    ours_robust = theirs_robust = 0
    for seed in range(3):
        for eps in (0.5, 1.0):
            step = 2.5 * eps / 20
            torch.manual_seed(seed)
            ours = make_attack("pgd-l2", {"steps": 20, "step_size": step})(target, x, y, [eps]).adversarials[0]
            torch.manual_seed(seed)
            theirs = torchattacks.PGDL2(tiny_cnn.net, eps=eps, alpha=step, steps=20, random_start=True)(x, y)
            with torch.no_grad():
                ours_robust += int((tiny_cnn(ours).argmax(1) == y).sum())
                theirs_robust += int((tiny_cnn(theirs).argmax(1) == y).sum())
    assert ours_robust <= theirs_robust


class _MeanPixel(torch.nn.Module):
    """Logits linear in the mean pixel (class 0 below 0.5, class 9 above): autograd returns its
    input gradient as an expanded tensor (one value per sample, stride 0 over the pixels)."""

    def forward(self, x):
        pixels = x[0].numel()  # the sum, not mean(): its backward is an expand
        return x.flatten(1).sum(1, keepdim=True) * torch.linspace(-1, 1, 10) / pixels + torch.linspace(0.5, -0.5, 10)


@pytest.mark.parametrize("name", ["fab-t", "fab-t-l2"])
def test_fab_never_writes_into_an_expanded_gradient(name, digits):
    """FAB re-linearised beaten rows with `grad[back] = ...`; on an expanded gradient that is an
    index_put_ into memory shared by every pixel (torch warns it is deprecated; later, an error)."""
    import warnings

    model = _MeanPixel()
    x, y = digits.test_x[:8], model(digits.test_x[:8]).argmax(1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        adv = make_attack(name, {"steps": 10, "targets": 2})(AttackTarget(model, model, (0.0, 1.0), 10), x, y, [8.0])
    assert (model(adv.adversarials[0]).argmax(1) != y).all()  # beaten rows were re-linearised
