"""Time as a user reads it (issue 22): progress never silent past its interval, even deep in one
slow batch, and estimates that count each evaluation once."""

from __future__ import annotations

import time

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
