"""APGD, Square, FAB-T, the autoattack ensemble, reject-aware objectives, masking sanity
attacks and the worst case: tested where the answer is known."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from advbench.attacks import AttackTarget, make_attack
from advbench.attacks.apgd import apgd, checkpoints
from advbench.attacks.fab import fab_targeted
from advbench.attacks.losses import dlr, targeted_dlr
from advbench.attacks.objectives import build_objective
from advbench.attacks.square import square_attack
from advbench.config import AttackSpec, DefenseSpec, Grid
from advbench.evaluation import Paths, evaluate
from advbench.metrics import ensemble_breakdown, robustness_curves, summarize
from advbench.read_model import CellRecords, Run, worst_case_outcomes
from advbench.norms import Norm
from advbench.report.tables import accuracy_table


def _target(model: nn.Module, bounds=(-10.0, 10.0), **extra) -> AttackTarget:
    return AttackTarget(model, model, bounds, 10, **extra)


def test_checkpoints_follow_the_paper_schedule():
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]


def test_dlr_is_scale_invariant_and_positive_when_misclassified():
    logits = torch.tensor([[3.0, 1.0, 0.5, 0.0, -1.0], [0.0, 2.0, 1.0, 0.5, -1.0]])
    y = torch.tensor([0, 0])
    assert torch.allclose(dlr(logits, y), dlr(1e4 * logits, y), rtol=1e-4)
    assert dlr(logits, y)[0] < 0 < dlr(logits, y)[1]
    assert targeted_dlr(logits, y, torch.tensor([1, 1]))[1] > 0


@pytest.mark.parametrize("norm", [Norm.L2, Norm.LINF])
def test_apgd_finds_the_closed_form_boundary_of_a_linear_model(linear_setup, norm):
    model, x, y = linear_setup
    minimal = model.minimal_l2(x) if norm is Norm.L2 else model.minimal_linf(x)
    objective = build_objective(_target(model), "ce")
    fooled_above = []
    for i in range(len(x)):  # a per-sample epsilon just above and just below the minimal norm
        above = apgd(objective, x[i:i + 1], y[i:i + 1], eps=float(minimal[i]) * 1.05, norm=norm, steps=50,
                     bounds=(-10, 10))
        below = apgd(objective, x[i:i + 1], y[i:i + 1], eps=float(minimal[i]) * 0.95, norm=norm, steps=50,
                     bounds=(-10, 10))
        assert norm.of(above.point - x[i:i + 1]).item() <= minimal[i] * 1.05 + 1e-5
        assert not below.fooled.item()  # nothing exists below the minimal norm
        fooled_above.append(above.fooled.item())
    assert all(fooled_above)


@pytest.mark.parametrize("norm", [Norm.L2, Norm.LINF])
def test_fab_t_reaches_the_minimal_norm_of_a_linear_model(linear_setup, norm):
    model, x, y = linear_setup
    minimal = model.minimal_l2(x) if norm is Norm.L2 else model.minimal_linf(x)
    objective = build_objective(_target(model), "margin")
    points, sizes = fab_targeted(objective, x, y, norm=norm, steps=30, bounds=(-10, 10), targets=9)
    assert (model(points).argmax(1) != y).all()
    assert torch.allclose(norm.of(points - x), sizes)
    ratio = sizes / minimal
    assert (ratio >= 1 - 1e-4).all() and (ratio <= 1.10).all(), ratio


@pytest.mark.parametrize("norm", [Norm.LINF, Norm.L2])
def test_square_stays_in_its_ball_and_counts_queries(linear_setup, norm):
    model, x, y = linear_setup
    minimal = model.minimal_linf(x) if norm is Norm.LINF else model.minimal_l2(x)
    eps = float(minimal.max()) * 3
    objective = build_objective(_target(model), "margin", decision=True)
    points, used = square_attack(objective, x, y, eps=eps, norm=norm, queries=400, bounds=(-10, 10))
    assert (norm.of(points - x) <= eps + 1e-5).all()
    fooled = model(points).argmax(1) != y
    assert fooled.float().mean() >= 0.75
    assert (used >= 1).all() and (used <= 400).all()
    assert used[~fooled].eq(400).all()  # samples left standing used the whole budget


class _Rejecting(nn.Module):
    """Logits of a linear model plus a reject score that rejects inputs far from 0.5 in mean."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        score = 50 * (x.flatten(1).mean(1) - 0.5).abs()
        return torch.cat([logits, score[:, None]], dim=1)


def test_reject_aware_objective_needs_misclassified_and_accepted(linear_setup):
    model, x, y = linear_setup
    joint = _Rejecting(model)
    target = _target(model, reject_score=lambda v: joint(v)[:, -1], reject_threshold=0.5,
                     joint_gradient_model=joint, joint_decision_model=joint)
    objective = build_objective(target, "ce")
    assert objective.reject_aware
    eps = float(model.minimal_linf(x).max()) * 4
    aware = apgd(objective, x, y, eps=eps, norm=Norm.LINF, steps=60, bounds=(-10, 10))
    blind = apgd(build_objective(target, "ce", reject_aware=False), x, y, eps=eps, norm=Norm.LINF, steps=60,
                 bounds=(-10, 10))

    def misclassified_and_accepted(points):
        out = joint(points)
        return (out[:, :10].argmax(1) != y) & (out[:, 10] <= 0.5)

    assert torch.equal(aware.fooled, misclassified_and_accepted(aware.point))
    assert misclassified_and_accepted(aware.point).float().mean() > misclassified_and_accepted(blind.point).float().mean()
    assert misclassified_and_accepted(aware.point).float().mean() >= 0.9


def _evaluate(tmp_path, defense: str, attacks, *, samples=40, sanity=True, zoo_dir=None):
    grid = Grid((DefenseSpec(defense),), tuple(attacks), samples=samples, batch_size=samples, sanity=sanity)
    return evaluate(grid, paths=Paths(results_dir=tmp_path / "results", zoo_dir=zoo_dir), artifacts=False)


def test_autoattack_records_components_and_its_log_is_consistent(tmp_path, trained_zoo):
    run = _evaluate(tmp_path, "cnn", [AttackSpec("autoattack", (0.1,), (("square_queries", 100), ("steps", 20)))],
                    sanity=False, zoo_dir=trained_zoo)
    records = run.store.records()
    assert set(records["component"]) <= {"", "apgd-ce", "apgd-t", "fab-t", "square"}
    fooled = (records["clean_pred"] == records["label"]) & (records["adv_pred"] != records["label"])
    assert (records.loc[fooled, "component"] != "").all()  # every verified success names its component
    assert records["loss_best"].notna().any()
    log = ensemble_breakdown(Run.from_records(records))
    stages = list(log["stage"])
    assert stages == ["apgd-ce", "apgd-t", "fab-t", "square", "verified"]
    accuracies = log["accuracy"].to_numpy()
    assert (np.diff(accuracies[:-1]) <= 0).all() and accuracies[-1] == pytest.approx(accuracies[-2])


def test_autoattack_takes_the_rand_version_for_stochastic_defenses():
    attack = make_attack("autoattack", {"norm": "l2"})
    plain = AttackTarget(nn.Identity(), nn.Identity(), (0, 1), 10)
    assert attack.components(plain) == ("apgd-ce", "apgd-t", "fab-t", "square")
    plain.stochastic = True
    assert attack.components(plain) == ("apgd-ce", "apgd-dlr")
    assert attack.norm is Norm.L2


@pytest.mark.parametrize("planted", ["misleading_gradient", "saturated_softmax"])
def test_planted_masking_is_flagged_and_printed_unreliable(tmp_path, planted):
    """Before the sanity attacks, pgd-linf alone printed these models' accuracy as the result
    (and the misleading gradient raised no flag at all)."""
    run = _evaluate(tmp_path, f"python:toys:{planted}", [AttackSpec("pgd-linf", (0.15,), (("steps", 20),))],
                    samples=60)
    flags = run.report.flags
    pgd_flags = set(flags.loc[flags["attack"] == "pgd-linf", "flag"])
    assert "beaten-by-black-box" in pgd_flags or "dead-gradients" in pgd_flags
    table = accuracy_table(run.report)
    row = next(r for r in table.rows if r[0].startswith("pgd-linf"))
    assert row[2].startswith("unreliable")


def test_misleading_gradient_is_beaten_by_the_sanity_attacks(tmp_path):
    run = _evaluate(tmp_path, "python:toys:misleading_gradient",
                    [AttackSpec("pgd-linf", (0.15,), (("steps", 20),))], samples=60)
    summary = run.report.summary.set_index("attack")
    assert summary.loc["sanity square", "robust_accuracy"] < summary.loc["pgd-linf", "robust_accuracy"] - 0.2
    assert "sanity pgd-linf from cnn" in summary.index


def test_grids_can_turn_the_sanity_attacks_off(tmp_path, trained_zoo):
    run = _evaluate(tmp_path, "cnn", [AttackSpec("pgd-linf", (0.1,), (("steps", 5),))], sanity=False,
                    zoo_dir=trained_zoo)
    assert [c.attack for c in run.manifest.cells] == ["pgd-linf"]


def test_sanity_transfer_does_not_depend_on_whether_the_zoo_held_the_cnn_yet(tmp_path):
    """A first run on an empty zoo trains the cnn: it gets the same grid (transfer sanity cells
    included, the same fingerprint to resume) as a later run on the filled zoo."""
    from advbench.config import DefenseSpec, Grid
    from advbench.sanity import with_sanity_attacks

    grid = Grid((DefenseSpec("cnn"), DefenseSpec("pgd-at")), (AttackSpec("pgd-linf", (0.1,)),))
    empty = with_sanity_attacks(grid, tmp_path)
    (tmp_path / "cnn-digits.pt").write_bytes(b"")
    filled = with_sanity_attacks(grid, tmp_path)
    assert "sanity pgd-linf from cnn" in [a.id for a in empty.attacks]
    assert empty.fingerprint() == filled.fingerprint()


# ----------------------------------------------------------------------------- the worst case


def _cell(attack: str, kind: str, norm: str, rows: list[tuple[int, float, int, float]]) -> pd.DataFrame:
    """rows: (sample, epsilon, adv_pred, norm of the example); label 0, clean prediction 0."""
    frame = pd.DataFrame([{"cell": f"d__{attack}", "defense": "d", "attack": attack, "norm": norm, "kind": kind,
                           "epsilon": eps, "sample": s, "label": 0, "clean_pred": 0, "clean_score": math.nan,
                           "adv_pred": p, "adv_score": math.nan, "l2": size, "linf": size, "x_l2": 5.0,
                           "seconds": 0.0, "queries": 1.0} for s, eps, p, size in rows])
    return frame


def _random_records(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n, frames = 30, []
    for a in range(3):  # fixed-epsilon attacks at random subsets of epsilons
        epsilons = sorted(rng.choice([0.5, 1.0, 1.5, 2.0], size=rng.integers(1, 4), replace=False))
        rows = [(s, e, int(rng.random() < e / 3), min(e, rng.random() * e)) for s in range(n) for e in epsilons]
        frames.append(_cell(f"fixed{a}", "fixed-epsilon", "l2", rows))
    for a in range(2):  # minimum-norm attacks: one example per sample at a random norm
        rows = [(s, math.nan, 1 if rng.random() < 0.9 else 0, float(rng.random() * 2.5)) for s in range(n)]
        frames.append(_cell(f"minnorm{a}", "minimum-norm", "l2", rows))
    return pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize("seed", range(8))
def test_all_is_at_or_below_every_attack_at_every_epsilon(seed):
    """Before, ALL was computed only where every attack could be read, so curves drew ALL above
    a dense minimum-norm curve between the grid's epsilons."""
    records = _random_records(seed)
    requested = {c: [0.5, 1.0] for c in records["cell"].unique()}
    run = Run.from_records(records, requested)
    curves = robustness_curves(run)
    worst = curves[curves["attack"] == "ALL L2"].set_index("epsilon")["accuracy"]
    for attack, curve in curves[curves["attack"] != "ALL L2"].groupby("attack"):
        for eps, accuracy in zip(curve["epsilon"], curve["accuracy"]):
            assert worst.loc[eps] <= accuracy + 1e-12, (attack, eps)
    assert (np.diff(worst.sort_index().to_numpy()) <= 1e-12).all()  # never rises with epsilon
    summary = summarize(run)
    for eps, group in summary.groupby("epsilon"):
        rows = group.set_index("attack")["robust_accuracy"]
        if "ALL L2" in rows:
            assert (rows["ALL L2"] <= rows.drop("ALL L2") + 1e-12).all()


def test_all_covers_smaller_epsilons_of_fixed_attacks():
    fixed = _cell("pgd", "fixed-epsilon", "l2", [(0, 0.5, 1, 0.4), (1, 0.5, 0, 0.5)])
    minnorm = _cell("ddn", "minimum-norm", "l2", [(0, math.nan, 1, 3.0), (1, math.nan, 1, 3.0)])
    run = Run.from_records(pd.concat([fixed, minnorm]))
    out = worst_case_outcomes(run, list(run.cells.values()), 1.0)  # pgd was not run at 1.0, but its 0.5 example counts
    assert list(out["robust"]) == [False, True]


# ----------------------------------------------------------------------------- minimum-norm attacks

@pytest.mark.parametrize("norm", [Norm.L2, Norm.LINF])
def test_fmn_reaches_the_minimal_norm_of_a_linear_model(linear_setup, norm):
    from advbench.attacks.fmn import fmn

    model, x, y = linear_setup
    minimal = model.minimal_l2(x) if norm is Norm.L2 else model.minimal_linf(x)
    points, sizes = fmn(build_objective(_target(model), "margin", reject_aware=False), x, y, norm=norm, steps=100,
                        bounds=(-10, 10))
    assert (model(points).argmax(1) != y).all()
    ratio = sizes / minimal
    assert (ratio >= 1 - 1e-4).all() and (ratio <= 1.01).all(), ratio


class _NoisyLinear(nn.Module):
    """A linear model whose logits carry noise: near its boundary a decision flips between draws."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        return logits + 0.5 * torch.randn_like(logits)


def test_fmn_examples_hold_on_a_fresh_draw_of_a_stochastic_model(linear_setup):
    """Examples found right at the boundary of an EOT average must still be adversarial when the
    runner re-predicts them with new random draws: they are pushed outwards until confirmed."""
    from advbench.defenses.base import ExpectationOverTransformation

    model, x, y = linear_setup
    noisy = ExpectationOverTransformation(_NoisyLinear(model), 8)
    target = AttackTarget(noisy, noisy, (-10.0, 10.0), 10, eot=8, stochastic=True)
    torch.manual_seed(0)
    adv = make_attack("fmn", {"steps": 60})(target, x, y, []).adversarials[0]
    with torch.no_grad():
        confirmed = torch.stack([ExpectationOverTransformation(_NoisyLinear(model), 8)(adv).argmax(1) != y
                                 for _ in range(5)]).float().mean()
    assert confirmed >= 0.9


def test_apgd_binary_search_brackets_the_minimal_norm(linear_setup):
    model, x, y = linear_setup
    x = x.clamp(0, 1)
    y = model(x).argmax(1)
    adv = make_attack("apgd-bs", {"depth": 14, "steps": 20})(AttackTarget(model, model, (0.0, 1.0), 10), x, y,
                                                             []).adversarials[0]
    sizes, minimal = Norm.L2.of(adv - x), model.minimal_l2(x)
    assert (model(adv).argmax(1) != y).all()
    assert (sizes >= minimal - 1e-4).all() and (sizes <= minimal * 1.1 + 2e-3).all()


def test_an_attack_can_be_limited_to_some_defenses(tmp_path):
    from advbench.config import grid_from_dict
    from advbench.errors import AdvbenchError

    grid = grid_from_dict({"defenses": ["cnn", "pgd-at"], "attacks": [
        {"name": "fgsm", "epsilons": [0.1]}, {"name": "autoattack", "epsilons": [0.1], "defenses": ["pgd-at"]}]})
    from advbench.data import load_dataset
    from advbench.run import plan_cells

    ids = [cell.id for cell in plan_cells(grid, load_dataset("digits"))]
    assert ids == ["cnn__fgsm", "pgd-at__fgsm", "pgd-at__autoattack"]
    with pytest.raises(AdvbenchError, match="not a defense of the grid"):
        grid_from_dict({"defenses": ["cnn"], "attacks": [{"name": "fgsm", "defenses": ["cmm"]}]})
    replaced = grid.with_overrides(defenses=(DefenseSpec("mine"),))
    assert all(not a.only for a in replaced.attacks)  # replaced defenses face every attack


# ----------------------------------------------------------------------------- acceptance on the shipped zoo (slow)

SHIPPED_ZOO = __import__("pathlib").Path(__file__).parents[2] / "zoo"


@pytest.mark.slow
@pytest.mark.parametrize("defense", ["cnn", "pgd-at"])
@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("l2", 1.0)])
def test_autoattack_is_at_least_as_tight_as_the_original(tmp_path, defense, norm, eps):
    """advbench autoattack <= the original AutoAttack (Croce and Hein's own code, pyautoattack,
    version standard) + 0.5 points on the same 200 samples, active sets and all."""
    pyautoattack = pytest.importorskip("pyautoattack")
    from advbench.data import load_dataset
    from advbench.read_model import outcomes_at
    from advbench.zoo import load

    grid = Grid((DefenseSpec(defense),), (AttackSpec("autoattack", (eps,), (("norm", norm),)),), samples=200,
                batch_size=200, sanity=False)
    run = evaluate(grid, paths=Paths(results_dir=tmp_path, zoo_dir=SHIPPED_ZOO), artifacts=False)
    ours = outcomes_at(CellRecords.of(run.store.records()), eps)["robust"].mean()
    data = load_dataset("digits")
    _, x, y = data.test_subset(200, 0)
    model = load(f"{defense}-digits", SHIPPED_ZOO, info=data.info)[0].eval()
    original = pyautoattack.AutoAttack(model, norm="Linf" if norm == "linf" else "L2", eps=eps, version="standard",
                                       seed=0)
    adv, _ = original.run_standard_evaluation(x, y, batch_size=200)  # (examples, their predicted labels)
    with torch.no_grad():
        theirs = ((model(x).argmax(1) == y) & (model(adv).argmax(1) == y)).float().mean().item()
    assert ours <= theirs + 0.005, f"advbench {ours:.1%} vs the original AutoAttack {theirs:.1%}"


@pytest.mark.slow
def test_autoattack_on_fgsm_at_beats_pgd_40x5_and_the_flag_fires(tmp_path):
    grid = Grid((DefenseSpec("fgsm-at"),), (AttackSpec("pgd-linf", (0.1, 0.2), (("restarts", 5), ("steps", 40))),
                                            AttackSpec("autoattack", (0.1, 0.2))), samples=240, batch_size=240,
                sanity=False)
    run = evaluate(grid, paths=Paths(results_dir=tmp_path, zoo_dir=SHIPPED_ZOO), artifacts=False)
    summary = run.report.summary.set_index(["attack", "epsilon"])["robust_accuracy"]
    flags = run.report.flags
    for eps in (0.1, 0.2):
        assert summary[("autoattack", eps)] <= summary[("pgd-linf", eps)]
        weaker = flags[(flags["flag"] == "weaker-than-autoattack") & (flags["epsilon"] == eps)]
        assert (summary[("pgd-linf", eps)] - summary[("autoattack", eps)] > 0.01) == (not weaker.empty)


@pytest.mark.slow
def test_reject_aware_autoattack_on_gat_generative_reaches_the_independent_error(tmp_path):
    """Issue 13: an independent Eq. 10 attack reached 64.7% error (misclassified and accepted at the
    95%-TPR threshold) on the 360 samples of presets/gat-digits.toml, where advbench's best objective
    reported 48.9%."""
    grid = Grid((DefenseSpec("gat:generative"),), (AttackSpec("autoattack", (0.3,)),), samples=360,
                batch_size=120, sanity=False)
    run = evaluate(grid, paths=Paths(results_dir=tmp_path, zoo_dir=SHIPPED_ZOO), artifacts=False)
    reject = run.report.reject.set_index("attack")
    assert reject.loc["autoattack", "error_with_reject"] >= 0.647


def test_norm_option_agrees_with_attack_names():
    from advbench.errors import AdvbenchError

    assert make_attack("autoattack", {"norm": "l2"}).norm is Norm.L2
    assert make_attack("apgd-ce-l2", {"norm": "l2"}).norm is Norm.L2  # agreeing with the name is fine
    assert make_attack("deepfool-l2", {"norm": "l2"}).norm is Norm.L2
    with pytest.raises(AdvbenchError, match="fixes norm"):
        make_attack("pgd-linf", {"norm": "l2"})
    with pytest.raises(AdvbenchError, match="l2 only"):
        make_attack("deepfool-l2", {"norm": "linf"})


@pytest.mark.slow
@pytest.mark.parametrize("ours,theirs", [
    ("apgd-ce", lambda ta, m, eps: ta.APGD(m, norm="Linf", eps=eps, steps=100, loss="ce", seed=0)),
    ("apgd-t", lambda ta, m, eps: ta.APGDT(m, norm="Linf", eps=eps, steps=100, n_classes=10, seed=0)),
    ("square", lambda ta, m, eps: ta.Square(m, norm="Linf", eps=eps, n_queries=1000, seed=0)),
    ("fab-t", lambda ta, m, eps: ta.FAB(m, norm="Linf", eps=eps, steps=100, multi_targeted=True, n_classes=10,
                                        seed=0)),
])
def test_each_component_is_as_strong_as_torchattacks_on_the_same_samples(ours, theirs):
    """Each of our components alone, against torchattacks' implementation of the same attack
    (AutoAttack's 100 steps; Square at 1000 queries on both sides), on the shipped cnn, Linf 0.1:
    ours leaves at most 1 point more accuracy."""
    torchattacks = pytest.importorskip("torchattacks")
    from advbench.data import load_dataset
    from advbench.zoo import load

    data = load_dataset("digits")
    _, x, y = data.test_subset(300, 0)
    model = load("cnn-digits", SHIPPED_ZOO, info=data.info)[0].eval()
    eps = 0.1
    torch.manual_seed(0)
    options = {"square": {"queries": 1000}}.get(ours, {})
    attack = make_attack(ours, options)
    adv = attack(AttackTarget(model, model, (0.0, 1.0), 10), x, y, [] if ours == "fab-t" else [eps]).adversarials[0]
    if ours == "fab-t":  # minimum-norm: read at eps like the metrics do
        adv = torch.where((Norm.LINF.of(adv - x) <= eps + 1e-5).view(-1, 1, 1, 1), adv, x)
    reference = theirs(torchattacks, model, eps)(x, y)
    with torch.no_grad():
        clean = model(x).argmax(1) == y
        ours_acc = (clean & (model(adv).argmax(1) == y)).float().mean().item()
        theirs_acc = (clean & (model(reference).argmax(1) == y)).float().mean().item()
    print(f"{ours}: advbench {ours_acc:.1%}, torchattacks {theirs_acc:.1%}")
    assert ours_acc <= theirs_acc + 0.01


def test_fab_t_within_eps_attacks_later_targets_only_on_samples_still_standing(digits):
    """Issue 22: FAB-T kept attacking points already beaten within epsilon for all 9 targets. At
    Linf 0.3 nearly every digit falls to the first target, so the later eight targets must cost
    far less than eight more full passes (before the fix: nine full passes)."""
    from advbench.attacks.fab import fab_within
    from advbench.attacks.objectives import build_objective
    from advbench.defenses.base import ModelDefense
    from advbench.norms import Norm
    from advbench.run import attack_target
    from advbench.zoo import load

    model = load("cnn-digits", SHIPPED_ZOO, info=digits.info)[0].eval()
    target, counters = attack_target(ModelDefense(model), 1, digits.info.bounds, 10)
    _, x, y = digits.test_subset(60, 0)
    steps, targets = 10, 9
    _, inside = fab_within(build_objective(target, "margin"), x, y, eps=0.3, norm=Norm.LINF, steps=steps,
                           bounds=digits.info.bounds, targets=targets)
    assert inside.float().mean() > 0.9
    evaluated = counters[0].count  # inputs through the gradient model
    one_target = len(x) * (steps + 1)
    assert evaluated < 3 * one_target, (evaluated, one_target)
