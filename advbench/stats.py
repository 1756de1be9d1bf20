"""Statistics on paired per-sample outcomes: confidence intervals and McNemar tests."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .errors import AdvbenchError

DEFAULT_ALPHA = 0.01
EXACT_BELOW = 25  # discordant pairs: exact binomial test below this, chi-square at or above


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion; (nan, nan) when there are no samples."""
    if n == 0:
        return float("nan"), float("nan")
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(successes, n, alpha=1 - confidence, method="wilson")
    return float(low), float(high)


@dataclass(frozen=True)
class McNemarResult:
    samples: int
    only_a_correct: int
    only_b_correct: int
    statistic: float
    pvalue: float
    exact: bool


def mcnemar_test(a_correct: pd.Series, b_correct: pd.Series) -> McNemarResult:
    """McNemar's test on two defenses' per-sample correctness (Series indexed by sample).

    Refuses pairs evaluated on different samples: the test is only valid for paired data.
    """
    if set(a_correct.index) != set(b_correct.index):
        raise AdvbenchError(
            f"McNemar needs the same samples for both defenses ({len(a_correct)} vs {len(b_correct)} samples, "
            f"{len(set(a_correct.index) ^ set(b_correct.index))} not shared); rerun them with the same samples and seed"
        )
    from statsmodels.stats.contingency_tables import mcnemar

    a = a_correct.astype(bool)
    b = b_correct.astype(bool).reindex(a.index)
    table = np.array([[int((a & b).sum()), int((a & ~b).sum())], [int((~a & b).sum()), int((~a & ~b).sum())]])
    discordant = table[0, 1] + table[1, 0]
    exact = discordant < EXACT_BELOW
    result = mcnemar(table, exact=exact, correction=True)
    return McNemarResult(len(a), int(table[0, 1]), int(table[1, 0]), float(result.statistic), float(result.pvalue), exact)
