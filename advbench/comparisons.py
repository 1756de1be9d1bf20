"""Pairwise McNemar tests between defenses, built from per-sample records.

For each table row of a run (clean, each attack at each epsilon, and the worst case
over a norm's attacks) every pair of defenses with that row is tested on the samples
both were evaluated on; pairs on different samples are refused, not tested.
"""

from __future__ import annotations

import itertools
import math

import pandas as pd

from .errors import AdvbenchError
from .norms import Norm
from .metrics import all_label
from .read_model import Run
from .stats import DEFAULT_ALPHA, holm_adjusted, mcnemar_test, paired_difference_interval

CLEAN = "clean"
MCNEMAR_COLUMNS = [
    "attack", "norm", "epsilon", "defense_a", "defense_b", "samples", "only_a_correct", "only_b_correct",
    "statistic", "pvalue", "exact", "pvalue_holm", "significant", "difference", "difference_low",
    "difference_high", "note",
]


def correctness_by_row(run: Run, summary: pd.DataFrame) -> dict[tuple[str, str, float], dict[str, pd.Series]]:
    """(attack, norm, epsilon) -> defense -> per-sample correctness, for every summary row
    plus the clean row."""
    rows: dict[tuple[str, str, float], dict[str, pd.Series]] = {}
    for (defense, _), cells in run.groups.items():
        rows.setdefault((CLEAN, "", 0.0), {}).setdefault(defense, cells[0].clean_correct)
    for defense, attack, norm, eps in zip(summary["defense"], summary["attack"], summary["norm"], summary["epsilon"]):
        cells = run.groups[(defense, Norm(norm))]
        if attack == all_label(norm):
            correct = run.worst_case(cells, float(eps))["robust"]
        else:
            (cell,) = [c for c in cells if c.attack == attack]
            correct = run.outcomes(cell, float(eps))["robust"]
        rows.setdefault((attack, norm, float(eps)), {})[defense] = correct
    return rows


def mcnemar_table(run: Run, summary: pd.DataFrame, alpha: float = DEFAULT_ALPHA, holm: bool = True) -> pd.DataFrame:
    """One row per defense pair per table row; empty when fewer than two defenses ran.

    With `holm`, `significant` uses Holm-Bonferroni adjusted p-values (`pvalue_holm`) within
    each row's family: the defense pairs compared under one attack at one epsilon (the question a
    row answers: which defenses differ here?). Correcting over the whole table would make every
    p-value of a large grid read 1. `difference` is the paired accuracy difference a - b with its
    95% interval."""
    out = []
    worst = summary[summary["attack"] == summary["norm"].map(all_label)]
    covers = {(r.defense, r.norm, float(r.epsilon)): r.covers for r in worst.itertuples()}
    worst_rows = {(r.attack, r.norm) for r in worst.itertuples()}
    for (attack, norm, eps), by_defense in correctness_by_row(run, summary).items():
        for a, b in itertools.combinations(by_defense, 2):
            base = {"attack": attack, "norm": norm, "epsilon": eps, "defense_a": a, "defense_b": b}
            # only a worst case depends on which attacks it covers; a single attack's row compares
            # the same attack on the same samples whatever else each defense faced
            if (attack, norm) in worst_rows and covers.get((a, norm, eps)) != covers.get((b, norm, eps)):
                out.append({**base, **_REFUSED, "note": f"refused: worst cases over different attacks "
                                                        f"({covers.get((a, norm, eps))} vs {covers.get((b, norm, eps))})"})
                continue
            a_correct, b_correct, note = on_shared_samples(by_defense[a], by_defense[b])
            try:
                result = mcnemar_test(a_correct, b_correct)
            except AdvbenchError as exc:
                out.append({**base, **_REFUSED, "note": f"refused: {exc}"})
                continue
            difference, low, high = paired_difference_interval(a_correct, b_correct)
            out.append({**base, "samples": result.samples, "only_a_correct": result.only_a_correct,
                        "only_b_correct": result.only_b_correct, "statistic": result.statistic,
                        "pvalue": result.pvalue, "exact": result.exact, "pvalue_holm": result.pvalue,
                        "significant": result.pvalue < alpha, "difference": difference, "difference_low": low,
                        "difference_high": high, "note": note})
    table = pd.DataFrame(out, columns=MCNEMAR_COLUMNS)
    tested = table["pvalue"].notna()
    if holm:
        for _, family in table[tested].groupby(["attack", "norm", "epsilon"], sort=False):
            if len(family) > 1:
                table.loc[family.index, "pvalue_holm"] = holm_adjusted(family["pvalue"].tolist())
                table.loc[family.index, "significant"] = table.loc[family.index, "pvalue_holm"] < alpha
    return table


def on_shared_samples(a: pd.Series, b: pd.Series) -> tuple[pd.Series, pd.Series, str]:
    """Both defenses' correctness on the samples both were evaluated on, when one was evaluated on
    the first of the other's samples (a defense with its own smaller `samples`); as they are else."""
    shared = a.index.intersection(b.index)
    if len(shared) == 0 or (len(shared) == len(a) and len(shared) == len(b)):
        return a, b, ""
    if len(shared) not in (len(a), len(b)):
        return a, b, ""  # neither holds the other's samples: refused by the test
    return a.loc[shared], b.loc[shared], f"on the {len(shared)} samples both were evaluated on"


_REFUSED = {"samples": math.nan, "only_a_correct": math.nan, "only_b_correct": math.nan, "statistic": math.nan,
            "pvalue": math.nan, "exact": None, "pvalue_holm": math.nan, "significant": None, "difference": math.nan,
            "difference_low": math.nan, "difference_high": math.nan}
