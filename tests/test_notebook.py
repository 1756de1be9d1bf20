"""The library call a notebook user makes (issue 23): an in-memory module with its normalisation
inside, in-memory tensors, one call; the same numbers as the CLI on the same model loaded by a
python: spec."""

from __future__ import annotations

import torch
from torch import nn

from advbench.notebook import benchmark
from helpers import invoke

MEAN, STD = 0.3, 0.35


class NormalizedCNN(nn.Module):
    """A researcher's digits classifier: inputs in [0, 1], normalised inside the model."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(MEAN))
        self.register_buffer("std", torch.tensor(STD))
        self.net = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


def trained(digits) -> NormalizedCNN:
    torch.manual_seed(0)
    model = NormalizedCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(4):
        for start in range(0, len(digits.train_y), 64):
            loss = nn.functional.cross_entropy(model(digits.train_x[start:start + 64]),
                                               digits.train_y[start:start + 64])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


def test_one_call_on_an_in_memory_model_equals_the_cli_on_the_same_model(digits, isolated):
    model = trained(digits)
    _, x, y = digits.test_subset(40, 0)  # the samples the CLI's digits run takes (seeded random subset)
    attacks = ["pgd-linf", ("autoattack", {"version": "standard", "square_queries": 200, "steps": 20})]
    result = benchmark(model, x, y, attacks=attacks, epsilons=[0.1], sanity=False, keep=False)
    ours = result.summary.set_index("attack")["robust_accuracy"]
    assert {"pgd-linf", "autoattack"} <= set(ours.index) and result.failed == {}
    assert result.headline[0].startswith("Linf eps 0.1, worst case over the attacks (set by): model ")
    assert not result.kept and "result.text('paper')" in result.text()
    assert result.evaluation.manifest.defenses["model"].weights_sha256  # the in-memory weights, hashed

    torch.save(model.state_dict(), isolated / "weights.pt")
    (isolated / "grid.toml").write_text(
        'samples = 40\nsanity = false\n'
        f'defenses = [{{ name = "python:test_notebook:NormalizedCNN", label = "model", '
        f'weights = "{isolated / "weights.pt"}" }}]\n'
        '[[attacks]]\nname = "pgd-linf"\nepsilons = [0.1]\n'
        '[[attacks]]\nname = "autoattack"\nversion = "standard"\nsquare_queries = 200\nsteps = 20\nepsilons = [0.1]\n')
    cli = invoke("run", isolated / "grid.toml", "--format", "json")
    assert cli.exit_code == 0, cli.output
    import json

    theirs = {row["attack"]: row["robust_accuracy"] for row in json.loads(cli.stdout)["summary"]}
    for attack in ("pgd-linf", "autoattack", "ALL Linf"):
        assert ours[attack] == theirs[attack], attack


def test_bad_input_is_one_line_naming_the_problem(digits):
    import pytest

    from advbench.errors import AdvbenchError

    model = NormalizedCNN().eval()
    _, x, y = digits.test_subset(8, 0)
    with pytest.raises(AdvbenchError, match="outside the bounds"):
        benchmark(model, x * 5, y, attacks=["fgsm"], epsilons=[0.1], keep=False)
    with pytest.raises(AdvbenchError, match="reject score"):
        benchmark(model, x, y, attacks=["fgsm"], epsilons=[0.1], reject_threshold=0.5, keep=False)
    with pytest.raises(AdvbenchError, match="torch.nn.Module"):
        benchmark(lambda t: t, x, y, attacks=["fgsm"], epsilons=[0.1], keep=False)
