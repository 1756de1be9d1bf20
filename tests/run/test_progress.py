"""Time as a user reads it (issue 22): progress never silent past its interval, even deep in one
slow batch, and estimates that count each evaluation once."""

from __future__ import annotations

import time

import pytest
import torch

from advbench import progress
from advbench.attacks import make_attack
from advbench.attacks.base import FixedEpsilonAttack
from advbench.config import AttackSpec, CellPlan, DefenseSpec
from advbench.defenses.base import ModelDefense
from advbench.run import predict_batches, run_cell
from advbench.run.estimate import estimate_message
from advbench.run.plan import PlannedCell, cell_info


class SlowAttack(FixedEpsilonAttack):
    """Thinks for a long while without asking the model anything (a foolbox attack deep in a
    binary search looks like this to the progress bar), then gives up."""

    def __init__(self, *, seconds: float = 0.5) -> None:
        self.seconds = seconds

    def run(self, target, x, y, *, epsilon):
        time.sleep(self.seconds)
        return x.clone()


def test_a_slow_batch_still_prints_a_line_every_interval(tiny_cnn, digits, capsys):
    defense = ModelDefense(tiny_cnn.net).eval()
    _, x, y = digits.test_subset(8, 0)
    idx = torch.arange(8)
    clean = predict_batches(defense, x, 8, torch.device("cpu"))
    plan = CellPlan(DefenseSpec("toy"), AttackSpec("slow", (0.1,)), (0.1,))
    started = time.monotonic()
    run_cell(plan, SlowAttack(seconds=0.55), defense, idx, x, y, clean, batch_size=8, bounds=(0.0, 1.0),
             num_classes=10, device=torch.device("cpu"), observer=progress.PlainObserver(interval=0.1))
    elapsed = time.monotonic() - started
    lines = [line for line in capsys.readouterr().err.splitlines() if "still working" in line]
    assert len(lines) >= 3 and all(line.startswith("toy x slow: ") for line in lines), lines
    assert not any("left" in line for line in lines)  # a silence has no honest time left
    assert elapsed < 2.0  # the heartbeat stops with the task


def planned(attack_name: str, options: dict, epsilons: tuple[float, ...]) -> PlannedCell:
    attack = make_attack(attack_name, options)
    plan = CellPlan(DefenseSpec("gfz"), AttackSpec(attack_name, epsilons), epsilons)
    return PlannedCell(plan, attack, cell_info(plan, attack))


def test_the_estimate_counts_autoattacks_eot_once_on_a_stochastic_defense():
    """The gfz cell was announced at 40 min and took 3: `auto` was counted as the standard version
    and its own EOT was multiplied by the defense's passes once more."""
    cell = planned("autoattack", {"steps": 100, "eot_iter": 20}, (0.1,))
    per_evaluation, samples = 0.001, 100
    message = estimate_message("gfz", per_evaluation, [cell], samples, torch.device("cpu"), eot=10,
                               threshold=0.0, stochastic=True)
    expected = samples * per_evaluation * 2 * 100 * 20  # APGD-CE and APGD-DLR, 20 passes a step
    assert f"up to {expected / 60:.0f} min" in message
    deterministic = estimate_message("cnn", per_evaluation, [cell], samples, torch.device("cpu"), eot=1,
                                     threshold=0.0)
    assert f"up to {samples * per_evaluation * (100 * 19 + 5000) / 60:.0f} min" in deterministic


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_time_left_follows_the_work_not_the_count(monkeypatch, capsys):
    """The demo's bar said "1/24, about 11:30 left" after a cheap cell, 0:43 left when 8 minutes
    remained: it counted cells. A grid task carries each cell's expected seconds as its work."""
    clock = FakeClock()
    monkeypatch.setattr(progress.time, "monotonic", clock)
    observer = progress.PlainObserver(interval=30)
    with observer.task("grid cells", 4, work=100.0) as advance:
        clock.now += 40
        advance(1, 80.0)  # the costly cell first: 80 of 100 expected seconds done in 40 s
        clock.now += 35
        advance(1, 10.0)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "grid cells: 1/4, 0:40 elapsed, about 0:10 left"  # counted by cells: 2:00
    assert lines[1] == "grid cells: 2/4, 1:15 elapsed, about 0:08 left"


def test_a_task_without_work_counts_its_items(monkeypatch, capsys):
    clock = FakeClock()
    monkeypatch.setattr(progress.time, "monotonic", clock)
    with progress.PlainObserver(interval=30).task("cnn x pgd", 200) as advance:
        clock.now += 30
        advance(50)
    assert capsys.readouterr().err.splitlines() == ["cnn x pgd: 50/200, 0:30 elapsed, about 1:30 left"]


def test_the_estimate_never_names_a_sanity_cell_as_the_reason():
    """`advbench attack eabs --attack pgd-l2` announced 172.7 h naming the sanity Square, which the
    user never asked for: it counts in the total, the reason given is an attack the user chose."""
    from dataclasses import replace

    from advbench.contract import CellRole

    asked = planned("pgd-linf", {"steps": 10}, (0.1,))
    square = planned("square", {"queries": 5000}, (0.1, 0.2))
    square = replace(square, plan=replace(square.plan, attack=replace(square.plan.attack, role=CellRole.SANITY)))
    message = estimate_message("gfz", 0.01, [asked, square], 100, torch.device("cpu"), eot=1, threshold=0.0)
    assert "with pgd-linf" in message and "square" not in message
    alone = estimate_message("gfz", 0.01, [asked], 100, torch.device("cpu"), eot=1, threshold=0.0)
    assert message != alone  # the sanity cell's time is in the total
    assert "--samples" not in estimate_message("gfz", 0.01, [asked], 10, torch.device("cpu"), eot=1, threshold=0.0)


def test_a_transfer_cell_is_timed_on_its_source_and_a_gradient_free_attack_by_forwards():
    """On the demo, gfz's transfer cell (crafted on cnn) was expected to take 18 s and took 0.4 s,
    and its Square (forwards only) 134 s for 27 s: both were priced at gfz's gradient passes."""
    from dataclasses import replace

    from advbench.run.estimate import FORWARD_SHARE, cell_evaluations, cell_seconds

    pgd = planned("pgd-linf", {"steps": 10}, (0.1,))
    transfer = replace(pgd, plan=replace(pgd.plan, attack=replace(pgd.plan.attack, source="cnn")))
    square = planned("square", {"queries": 100}, (0.1,))
    gfz, cnn = 0.01, 0.0001
    assert cell_seconds(pgd, gfz, False, 1, {"cnn": cnn}.__getitem__) == gfz * cell_evaluations(pgd, False, 1)
    assert cell_seconds(transfer, gfz, False, 1, {"cnn": cnn}.__getitem__) == cnn * cell_evaluations(pgd, False, 1)
    assert cell_seconds(square, gfz, False, 1) == pytest.approx(gfz * FORWARD_SHARE * cell_evaluations(square, False, 1))


def test_a_resumed_task_paces_only_this_sessions_items(monkeypatch, capsys):
    """Issue 22: after a resumed `train` the time left counted the skipped epochs as done in this
    session (5 of 10 done before, one more in 40 s read "about 0:26 left"; 4 more take 2:40)."""
    clock = FakeClock()
    monkeypatch.setattr(progress.time, "monotonic", clock)
    with progress.PlainObserver(interval=30).task("training cnn", 10, done_before=5) as advance:
        clock.now += 40
        advance(1)
    assert capsys.readouterr().err.splitlines() == ["training cnn: 6/10, 0:40 elapsed, about 2:40 left"]
