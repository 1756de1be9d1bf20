"""The tests' toys: models built to trigger attack-failure flags (loaded as `python:toys:NAME`),
a confidence detector (a reject option on any classifier) and made-up records for the report."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from advbench import Defense, zoo
from advbench.data import load_dataset

ZOO = Path(__file__).parents[1] / "zoo"


def _cnn() -> nn.Module:
    return zoo.load("cnn-digits", ZOO, info=load_dataset("digits").info)[0]


class Quantized(nn.Module):
    """The shipped digits cnn behind rounding to the data's 17 grey levels: the same clean
    predictions, but zero input gradients everywhere (gradient masking by a step function)."""

    def __init__(self) -> None:
        super().__init__()
        self.cnn = _cnn()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cnn(torch.round(x * 16) / 16)


class SecretlyRandom(nn.Module):
    """The digits cnn with large logit noise, not declared stochastic."""

    def __init__(self) -> None:
        super().__init__()
        self.cnn = _cnn()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.cnn(x)
        return logits + 3 * logits.std() * torch.randn_like(logits)


def quantized() -> nn.Module:
    return Quantized()


def secretly_random() -> nn.Module:
    return SecretlyRandom()


def honest() -> nn.Module:
    return _cnn()



class _WrongStraightThrough(torch.autograd.Function):
    """Forward: a coarse 4-level quantiser. Backward: the negated identity, a non-zero but
    wrong gradient (so no dead-gradient check can notice it)."""

    @staticmethod
    def forward(ctx, x):  # type: ignore[override]
        return torch.round(x * 3) / 3

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        return -grad


class MisleadingGradient(nn.Module):
    """The digits cnn behind a quantiser whose straight-through gradient points the wrong way."""

    def __init__(self) -> None:
        super().__init__()
        self.cnn = _cnn()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cnn(_WrongStraightThrough.apply(x))


class SaturatedSoftmax(nn.Module):
    """The digits cnn returning log-softmax of logits scaled by 1000: cross-entropy gradients
    underflow to zero on confident inputs, while the decisions are the cnn's."""

    def __init__(self) -> None:
        super().__init__()
        self.cnn = _cnn()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(1000 * self.cnn(x), dim=1)


def misleading_gradient() -> nn.Module:
    return MisleadingGradient()


def saturated_softmax() -> nn.Module:
    return SaturatedSoftmax()


class ConfidenceDetector(Defense):
    """A classifier with a reject option: it rejects by the negative top logit (low confidence is
    suspicious), accepting scores at or below `threshold`."""

    def __init__(self, inner: nn.Module, threshold: float = -5.0) -> None:
        super().__init__()
        self.inner = inner
        self.reject_threshold = threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)

    def reject_score(self, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        return -logits.max(dim=1).values


def many_attacks_run(defenses: int = 9, attacks: int = 8, samples: int = 20) -> pd.DataFrame:
    """`defenses` reject-option defenses, each under `attacks` fixed-epsilon Linf attacks (two at a
    single epsilon) and one minimum-norm attack."""
    rng = np.random.default_rng(0)
    frames = []
    for d in range(defenses):
        labels = rng.integers(0, 10, samples)
        for a in range(attacks + 1):
            minimum = a == attacks
            epsilons = [math.nan] if minimum else ([0.1] if a < 2 else [0.05, 0.1, 0.2])
            for eps in epsilons:
                wrong = rng.random(samples) < (0.5 if minimum else 2 * eps)
                frames.append(pd.DataFrame({
                    "cell": f"d{d}__a{a}", "defense": f"d{d}", "attack": f"a{a}", "norm": "linf",
                    "kind": "minimum-norm" if minimum else "fixed-epsilon", "epsilon": eps,
                    "sample": np.arange(samples), "label": labels, "clean_pred": labels,
                    "clean_score": rng.random(samples), "adv_pred": np.where(wrong, (labels + 1) % 10, labels),
                    "adv_score": rng.random(samples), "l2": 1.0, "linf": rng.random(samples) * 0.3, "x_l2": 5.0,
                    "seconds": 0.1, "queries": 1.0}))
    return pd.concat(frames, ignore_index=True)
