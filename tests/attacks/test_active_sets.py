"""Inside an attack, a sample the defense itself calls beaten leaves the batch (issue 22): the
robust accuracy of deterministic attacks equals attacking everything, with fewer evaluations."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import advbench.attacks.gradient as gradient
from advbench import zoo
from advbench.attacks import make_attack
from advbench.defenses.base import ModelDefense
from advbench.run import attack_target

SHIPPED_ZOO = Path(__file__).parents[2] / "zoo"


def robust_and_evaluations(model, digits, name: str, options: dict, eps: float) -> tuple[torch.Tensor, int]:
    target, counters = attack_target(ModelDefense(model), 1, digits.info.bounds, 10)
    _, x, y = digits.test_subset(200, 0)
    torch.manual_seed(0)
    (adv,) = make_attack(name, options)(target, x, y, [eps]).adversarials
    with torch.no_grad():
        robust = (model(x).argmax(1) == y) & (model(adv).argmax(1) == y)
    return robust, sum(c.count for c in counters)


@pytest.mark.parametrize("defense", ["cnn", "pgd-at"])
@pytest.mark.parametrize("name,options,eps", [("pgd-linf", {"steps": 20, "random_start": False}, 0.1),
                                              ("pgd-l2", {"steps": 20, "random_start": False}, 1.0),
                                              ("mim", {"steps": 10}, 0.1)])
def test_leaving_the_batch_changes_no_outcome(digits, monkeypatch, defense, name, options, eps):
    model = zoo.load(f"{defense}-digits", SHIPPED_ZOO, info=digits.info)[0].eval()
    active, active_cost = robust_and_evaluations(model, digits, name, options, eps)
    monkeypatch.setattr(gradient, "real_decision", lambda *args: None)  # every sample to the last step
    full, full_cost = robust_and_evaluations(model, digits, name, options, eps)
    assert torch.equal(active, full)
    assert active_cost < full_cost
