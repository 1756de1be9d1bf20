"""Metrics as pure functions of per-sample records; nothing here runs a model.

A sample is robust at epsilon when its clean prediction is right and the attack's
example at that epsilon is still classified right. For a minimum-norm attack the
example counts at epsilon only if its norm (in the attack's norm) is within epsilon,
so one run gives the accuracy at every epsilon.
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import pandas as pd

from .attacks.verify import BALL_TOLERANCE

SUMMARY_COLUMNS = [
    "defense", "attack", "norm", "kind", "epsilon", "samples", "clean_accuracy", "robust_accuracy", "success_rate",
    "mean_l2", "median_l2", "mean_linf", "median_linf", "rho", "seconds_per_sample", "samples_per_second",
    "queries_per_sample",
]
MINIMUM_NORM = "minimum-norm"


def attack_norms(records: pd.DataFrame) -> pd.Series:
    """Perturbation size of each record in its attack's own norm."""
    return records["l2"].where(records["norm"] == "l2", records["linf"])


def fooled_at(records: pd.DataFrame, epsilon: float) -> pd.Series:
    """Clean-correct samples that the attack's example misclassifies within `epsilon`."""
    clean_ok = records["clean_pred"] == records["label"]
    wrong = records["adv_pred"] != records["label"]
    if (records["kind"] == MINIMUM_NORM).all():
        wrong &= attack_norms(records) <= epsilon + BALL_TOLERANCE
    return clean_ok & wrong


def _rows_at(records: pd.DataFrame, epsilon: float) -> pd.DataFrame:
    if (records["kind"] == MINIMUM_NORM).all():
        return records
    return records[np.isclose(records["epsilon"], epsilon)]


def summarize_cell(records: pd.DataFrame, epsilons: Iterable[float]) -> pd.DataFrame:
    """One summary row per epsilon for one cell; minimum-norm cells also get an `inf` row."""
    first = records.iloc[0]
    minimum_norm = first["kind"] == MINIMUM_NORM
    grid = sorted(set(epsilons) | ({math.inf} if minimum_norm else set()))
    if not minimum_norm:
        grid = sorted(set(records["epsilon"].dropna()))
    rows = []
    for eps in grid:
        at = _rows_at(records, eps)
        n = len(at)
        clean_ok = at["clean_pred"] == at["label"]
        fooled = fooled_at(at, eps)
        successful = at[fooled]
        seconds = at["seconds"].mean()
        rows.append({
            "defense": first["defense"], "attack": first["attack"], "norm": first["norm"], "kind": first["kind"],
            "epsilon": eps, "samples": n,
            "clean_accuracy": clean_ok.mean(),
            "robust_accuracy": (clean_ok & ~fooled).mean(),
            "success_rate": fooled.sum() / clean_ok.sum() if clean_ok.any() else math.nan,
            "mean_l2": successful["l2"].mean(), "median_l2": successful["l2"].median(),
            "mean_linf": successful["linf"].mean(), "median_linf": successful["linf"].median(),
            "rho": (successful["l2"] / successful["x_l2"]).mean(),
            "seconds_per_sample": seconds,
            "samples_per_second": 1.0 / seconds if seconds > 0 else math.nan,
            "queries_per_sample": at["queries"].mean(),
        })
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def summarize(records: pd.DataFrame, epsilons_by_cell: dict[str, list[float]]) -> pd.DataFrame:
    """Summary rows for every cell in `records`, in record order."""
    frames = [summarize_cell(group, epsilons_by_cell.get(cell, []))
              for cell, group in records.groupby("cell", sort=False)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=SUMMARY_COLUMNS)
