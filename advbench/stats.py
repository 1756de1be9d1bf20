"""Statistics on paired per-sample outcomes: confidence intervals and McNemar tests."""

from __future__ import annotations

import functools
import math
import statistics
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .errors import AdvbenchError

from .settings import DEFAULT_ALPHA  # noqa: F401 - re-exported for the statistics' callers
EXACT_BELOW = 25  # discordant pairs: exact binomial test below this, chi-square at or above


@functools.lru_cache(maxsize=4096)  # a report asks for the same counts hundreds of times
def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion; (nan, nan) when there are no samples. The closed
    form statsmodels' `proportion_confint(method="wilson")` computes (a test compares them), written
    out because importing statsmodels costs every report about 2 s of CPU."""
    if n == 0:
        return float("nan"), float("nan")
    z = statistics.NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    p, z2 = successes / n, z * z
    denominator = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    spread = z * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n ** 2)) / denominator
    return float(centre - spread), float(centre + spread)


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
    a = a_correct.astype(bool)
    b = b_correct.astype(bool).reindex(a.index)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    statistic, pvalue, exact = mcnemar_pvalue(only_a, only_b)
    return McNemarResult(len(a), only_a, only_b, statistic, pvalue, exact)


def mcnemar_pvalue(only_a: int, only_b: int) -> tuple[float, float, bool]:
    """(statistic, p-value, exact) of McNemar's test from the discordant counts, as statsmodels'
    `mcnemar(table, exact=discordant < 25, correction=True)` computes them (a test compares):
    the two-sided exact binomial test below 25 discordant pairs, the continuity-corrected
    chi-square at or above. Written out because importing statsmodels and scipy costs a report
    seconds of CPU."""
    discordant = only_a + only_b
    if discordant < EXACT_BELOW:
        smaller = min(only_a, only_b)
        tail = sum(math.comb(discordant, k) for k in range(smaller + 1)) / 2 ** discordant
        return float(smaller), min(2 * tail, 1.0), True
    statistic = (abs(only_a - only_b) - 1) ** 2 / discordant
    return float(statistic), math.erfc(math.sqrt(statistic / 2)), False


def paired_difference_interval(a_correct: pd.Series, b_correct: pd.Series,
                               confidence: float = 0.95) -> tuple[float, float, float]:
    """Accuracy of a minus accuracy of b on the same samples, with Newcombe's (1998, method 10)
    score interval for a difference of paired proportions: (difference, low, high)."""
    a = a_correct.astype(bool)
    b = b_correct.astype(bool).reindex(a.index)
    n = len(a)
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    both, only_a, only_b = int((a & b).sum()), int((a & ~b).sum()), int((~a & b).sum())
    neither = n - both - only_a - only_b
    p1, p2 = (both + only_a) / n, (both + only_b) / n
    l1, u1 = wilson_interval(both + only_a, n, confidence)
    l2, u2 = wilson_interval(both + only_b, n, confidence)
    denominator = (both + only_a) * (only_b + neither) * (both + only_b) * (only_a + neither)
    phi = (both * neither - only_a * only_b) / np.sqrt(denominator) if denominator > 0 else 0.0
    difference = p1 - p2
    low = difference - np.sqrt(max((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2, 0.0))
    high = difference + np.sqrt(max((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2, 0.0))
    return float(difference), float(max(low, -1.0)), float(min(high, 1.0))


def holm_adjusted(pvalues: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (family-wise error across all the tests given):
    sorted ascending, the i-th (from 0) of m times m - i, made non-decreasing, capped at 1.
    statsmodels' `multipletests(method="holm")` computes the same numbers (a test checks it),
    but runs a full garbage collection on every call: 0.46 s each, 15 s of a demo report."""
    if not pvalues:
        return []
    values = np.asarray(pvalues, dtype=float)
    order = np.argsort(values)
    m = len(values)
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(np.maximum.accumulate((m - np.arange(m)) * values[order]), 1.0)
    return [float(p) for p in adjusted]
