"""The statistics written out by hand agree with the libraries that define them."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from advbench.reject_metrics import roc, roc_auc
from advbench.stats import EXACT_BELOW, mcnemar_pvalue


@pytest.mark.parametrize("only_a,only_b", [(0, 0), (3, 9), (12, 12), (0, 24), (10, 30), (100, 0), (57, 61)])
def test_mcnemar_matches_statsmodels(only_a, only_b):
    from statsmodels.stats.contingency_tables import mcnemar

    exact = only_a + only_b < EXACT_BELOW
    expected = mcnemar([[50, only_a], [only_b, 20]], exact=exact, correction=True)
    statistic, pvalue, was_exact = mcnemar_pvalue(only_a, only_b)
    assert was_exact == exact
    assert statistic == pytest.approx(float(expected.statistic), abs=1e-12)
    assert pvalue == pytest.approx(float(expected.pvalue), rel=1e-9, abs=1e-15)


def test_mcnemar_matches_statsmodels_on_every_small_table():
    from statsmodels.stats.contingency_tables import mcnemar

    for only_a, only_b in itertools.product(range(0, 30, 3), repeat=2):
        expected = mcnemar([[5, only_a], [only_b, 5]], exact=only_a + only_b < EXACT_BELOW, correction=True)
        assert mcnemar_pvalue(only_a, only_b)[1] == pytest.approx(float(expected.pvalue), rel=1e-9, abs=1e-15)


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_scikit_learn_with_ties(seed):
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    n = 40
    clean = rng.integers(0, 6, n).astype(float)  # few distinct values: many ties
    score = rng.integers(2, 8, n).astype(float)
    fooled = rng.random(n) < 0.6
    out = pd.DataFrame({"clean_score": clean, "score": score, "fooled": fooled})
    truth = np.r_[np.zeros(n), np.ones(fooled.sum())]
    assert roc_auc(out) == pytest.approx(roc_auc_score(truth, np.r_[clean, score[fooled]]), abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_roc_points_match_scikit_learn_with_ties(seed):
    from sklearn.metrics import roc_curve

    rng = np.random.default_rng(seed)
    clean, score = rng.integers(0, 6, 40).astype(float), rng.integers(2, 8, 40).astype(float)
    fooled = rng.random(40) < 0.6
    fpr, tpr, _ = roc(pd.DataFrame({"clean_score": clean, "score": score, "fooled": fooled}))
    truth = np.r_[np.zeros(40), np.ones(fooled.sum())]
    expected_fpr, expected_tpr, _ = roc_curve(truth, np.r_[clean, score[fooled]], drop_intermediate=False)
    np.testing.assert_allclose(fpr, expected_fpr, atol=1e-12)
    np.testing.assert_allclose(tpr, expected_tpr, atol=1e-12)


def test_auc_is_nan_without_successful_adversarials():
    out = pd.DataFrame({"clean_score": [0.1, 0.2], "score": [0.3, 0.4], "fooled": [False, False]})
    assert np.isnan(roc_auc(out))
