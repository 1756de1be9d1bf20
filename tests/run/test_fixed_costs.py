"""The runner's own passes through a model, beyond the attacks': the time estimate reuses the first
batch's clean gradient pass, the defense's cells share their clean gradients, and the checks on a
new defense share forwards with its clean predictions."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from advbench.notebook import benchmark


class CountingNet(nn.Module):
    """A linear digits classifier that counts its gradient passes at the clean inputs (the
    runner's, as random-start PGD never evaluates there) and its forwards without gradient;
    each clean gradient pass takes `pause` seconds, as a large model's would."""

    def __init__(self, clean: torch.Tensor, pause: float) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(64, 10)
        self.clean, self.pause = clean, pause
        self.clean_gradient_passes = 0
        self.forwards_without_gradient = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not x.requires_grad and x.shape == self.clean.shape and torch.equal(x, self.clean):
            self.forwards_without_gradient += 1
        if x.requires_grad and x.shape == self.clean.shape and torch.equal(x.detach(), self.clean):
            self.clean_gradient_passes += 1
            time.sleep(self.pause)
        return self.linear(x.flatten(1))


@pytest.mark.parametrize("pause, expected", [(0.08, 1), (0.0, 2)], ids=["slow-model", "quick-model"])
def test_clean_gradient_passes_are_shared_by_the_estimate_and_every_cell(digits, pause, expected):
    """Before: the estimate's two passes plus one per batch per cell (4 here). Now one pass for
    the whole defense, plus one warm pass to time a quick model."""
    x, y = digits.test_x[:30], digits.test_y[:30]
    model = CountingNet(x, pause).eval()
    result = benchmark(model, x, y, attacks=[("pgd-linf", {"steps": 3}), ("pgd-l2", {"steps": 3})],
                       epsilons=[0.1], sanity=False, keep=False)
    assert result.failed == {} and {"pgd-linf", "pgd-l2"} <= set(result.summary["attack"])
    assert model.clean_gradient_passes == expected


def test_the_new_defense_checks_share_forwards_with_the_clean_predictions(digits):
    """Before: a forward to check the outputs, two for the determinism probe, one for the clean
    predictions (4). Now the probe's two predictions are the check and the clean predictions."""
    x, y = digits.test_x[:30], digits.test_y[:30]
    model = CountingNet(x, 0.0).eval()
    result = benchmark(model, x, y, attacks=[("pgd-linf", {"steps": 3})], epsilons=[0.1], sanity=False, keep=False)
    assert result.failed == {}
    assert model.forwards_without_gradient == 2
