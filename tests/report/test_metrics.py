"""Metrics against hand-computed values on small record tables."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from advbench.metrics import summarize
from advbench.read_model import Run


def records(kind, rows):
    base = {"cell": "d__a", "defense": "d", "attack": "a", "norm": "l2", "kind": kind, "clean_score": math.nan,
            "adv_score": math.nan, "x_l2": 2.0, "seconds": 0.5, "queries": 10.0}
    return pd.DataFrame([{**base, **r} for r in rows])


def test_fixed_epsilon_accuracy_success_and_distortion():
    rows = records("fixed-epsilon", [
        # sample 0: robust; 1: fooled (l2 0.4); 2: clean wrong; 3: fooled (l2 0.8)
        {"epsilon": 1.0, "sample": 0, "label": 1, "clean_pred": 1, "adv_pred": 1, "l2": 0.9, "linf": 0.3},
        {"epsilon": 1.0, "sample": 1, "label": 2, "clean_pred": 2, "adv_pred": 0, "l2": 0.4, "linf": 0.2},
        {"epsilon": 1.0, "sample": 2, "label": 3, "clean_pred": 4, "adv_pred": 4, "l2": 0.0, "linf": 0.0},
        {"epsilon": 1.0, "sample": 3, "label": 5, "clean_pred": 5, "adv_pred": 7, "l2": 0.8, "linf": 0.4},
    ])
    row = summarize(Run.from_records(rows)).iloc[0]
    assert row.clean_accuracy == 0.75
    assert row.robust_accuracy == 0.25
    assert row.success_rate == pytest.approx(2 / 3)
    assert row.mean_l2 == pytest.approx(0.6) and row.median_l2 == pytest.approx(0.6)
    assert row.rho == pytest.approx(0.3)
    assert row.samples_per_second == 2.0 and row.queries_per_sample == 10.0


def test_minimum_norm_accuracy_at_each_epsilon():
    rows = records("minimum-norm", [
        {"epsilon": math.nan, "sample": 0, "label": 1, "clean_pred": 1, "adv_pred": 0, "l2": 0.3, "linf": 0.1},
        {"epsilon": math.nan, "sample": 1, "label": 1, "clean_pred": 1, "adv_pred": 0, "l2": 1.5, "linf": 0.5},
        {"epsilon": math.nan, "sample": 2, "label": 1, "clean_pred": 1, "adv_pred": 1, "l2": 4.0, "linf": 0.9},
        {"epsilon": math.nan, "sample": 3, "label": 1, "clean_pred": 2, "adv_pred": 2, "l2": 0.0, "linf": 0.0},
    ])
    summary = summarize(Run.from_records(rows, {"d__a": [0.5, 2.0]})).set_index("epsilon")
    assert summary.loc[0.5, "robust_accuracy"] == 0.5
    assert summary.loc[2.0, "robust_accuracy"] == 0.25
    assert summary.loc[math.inf, "robust_accuracy"] == 0.25  # sample 2: the attack failed
    assert summary.loc[math.inf, "success_rate"] == pytest.approx(2 / 3)
    assert summary.loc[math.inf, "mean_l2"] == pytest.approx(0.9)
    assert summary.loc[0.5, "mean_l2"] == pytest.approx(0.3)


def test_linf_minimum_norm_uses_linf_column():
    rows = records("minimum-norm", [
        {"norm": "linf", "epsilon": math.nan, "sample": 0, "label": 1, "clean_pred": 1, "adv_pred": 0, "l2": 5.0, "linf": 0.1},
    ])
    summary = summarize(Run.from_records(rows, {"d__a": [0.05, 0.2]})).set_index("epsilon")
    assert summary.loc[0.05, "robust_accuracy"] == 1.0 and summary.loc[0.2, "robust_accuracy"] == 0.0
