"""Shared fixtures: the digits data, a quickly trained tiny zoo, a linear model with known answers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from advbench import zoo
from advbench.data import load_dataset


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`slow` tests run with --runslow; `gpu` tests where CUDA is; `subprocess` ones always
    (deselect them with -m "not subprocess")."""
    slow = pytest.mark.skip(reason="slow: pass --runslow")
    no_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "slow" in item.keywords and not config.getoption("--runslow"):
            item.add_marker(slow)
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(no_gpu)


@pytest.fixture(scope="session")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="session")
def trained_zoo(tmp_path_factory, digits):
    """A zoo holding `cnn-digits` trained for a few epochs (enough for ~90% accuracy)."""
    directory = tmp_path_factory.mktemp("zoo")
    zoo.train("cnn", digits, options={"epochs": 4}, zoo_dir=directory)
    return directory


@pytest.fixture(scope="session")
def tiny_pgn(trained_zoo, digits):
    """A `pgn` model (classifier + generator) trained for one epoch."""
    zoo.train("pgn", digits, options={"epochs": 1}, zoo_dir=trained_zoo)
    return zoo.load("pgn-digits", trained_zoo, info=digits.info)[0]


@pytest.fixture(scope="session")
def tiny_gat(trained_zoo, digits):
    """A `gat` model trained for two epochs with a short inner attack."""
    zoo.train("gat", digits, options={"epochs": 2, "steps": 3, "classifier_epochs": 2, "val_samples": 20},
              zoo_dir=trained_zoo)
    return zoo.load("gat-digits", trained_zoo, info=digits.info)[0]


@pytest.fixture(scope="session")
def tiny_cnn(trained_zoo, digits):
    model, _ = zoo.load("cnn-digits", trained_zoo, info=digits.info)
    return model


@pytest.fixture
def isolated(tmp_path, monkeypatch, trained_zoo):
    """Run CLI commands in a scratch directory with the tiny zoo and a private results dir."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ADVBENCH_ZOO", str(trained_zoo))
    monkeypatch.setenv("ADVBENCH_RESULTS", str(tmp_path / "results"))
    monkeypatch.delenv("ADVBENCH_DEBUG", raising=False)
    return tmp_path


class LinearModel(nn.Module):
    """logits = W x + b on flattened inputs: minimal adversarial perturbations have closed forms."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.bias = nn.Parameter(bias, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.weight.T + self.bias

    def minimal_l2(self, x: torch.Tensor) -> torch.Tensor:
        """min_j (z_y - z_j) / ||w_y - w_j||_2 with y the predicted class (box constraints inactive)."""
        return self._minimal(x, lambda d: d.norm(dim=-1))

    def minimal_linf(self, x: torch.Tensor) -> torch.Tensor:
        """min_j (z_y - z_j) / ||w_y - w_j||_1: the dual norm of Linf."""
        return self._minimal(x, lambda d: d.abs().sum(dim=-1))

    def _minimal(self, x: torch.Tensor, dual) -> torch.Tensor:
        logits = self(x)
        y = logits.argmax(1)
        gaps = logits.gather(1, y[:, None]) - logits
        diffs = self.weight[y][:, None, :] - self.weight[None, :, :]
        ratio = gaps / dual(diffs).clamp_min(1e-12)
        ratio[torch.arange(len(x)), y] = float("inf")
        return ratio.min(dim=1).values


@pytest.fixture
def linear_setup():
    """A 10-class linear model on 1x8x8 inputs near the middle of the box, so bounds never bind."""
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(10, 64, generator=g)
    bias = torch.zeros(10)
    model = LinearModel(weight, bias).eval()
    x = 0.5 + 0.01 * torch.randn(16, 1, 8, 8, generator=g)
    y = model(x).argmax(1)
    return model, x, y
