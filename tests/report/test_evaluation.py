"""Issue-3 metrics against hand-computed values on small synthetic record sets."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from advbench.comparisons import mcnemar_table
from advbench.errors import AdvbenchError
from advbench.metrics import robustness_curves, summarize
from advbench.read_model import CellRecords, Run, outcomes_at, worst_case_outcomes
from advbench.reject_metrics import detection_at_false_alarm, reject_rates, roc
from advbench.stats import mcnemar_test, wilson_interval


def make_records(defense, attack, kind, rows, norm="linf", cell=None):
    base = {"cell": cell or f"{defense}__{attack}", "defense": defense, "attack": attack, "norm": norm, "kind": kind,
            "clean_score": math.nan, "adv_score": math.nan, "l2": 0.1, "linf": 0.1, "x_l2": 1.0, "seconds": 1.0,
            "queries": 1.0, "epsilon": 0.1 if kind == "fixed-epsilon" else math.nan}
    return pd.DataFrame([{**base, **r} for r in rows])


def outcome_rows(correct_clean, correct_adv):
    """Rows for samples 0..n-1 with label 0; predictions 0 (right) or 1 (wrong)."""
    return [{"sample": i, "label": 0, "clean_pred": 0 if c else 1, "adv_pred": 0 if a else 1}
            for i, (c, a) in enumerate(zip(correct_clean, correct_adv))]


def test_wilson_interval_on_known_proportion():
    low, high = wilson_interval(8, 10)
    # hand computation: (p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n), z = 1.959964
    z, n, p = 1.959963984540054, 10, 0.8
    centre, spread = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert low == pytest.approx((centre - spread) / (1 + z * z / n))
    assert high == pytest.approx((centre + spread) / (1 + z * z / n))
    assert wilson_interval(0, 20)[0] == pytest.approx(0.0, abs=1e-12) and wilson_interval(0, 20)[1] > 0


def test_mcnemar_matches_statsmodels_exact_and_chi_square():
    from statsmodels.stats.contingency_tables import mcnemar

    # small: 3 vs 9 discordant -> exact binomial
    a = pd.Series([True] * 40 + [True] * 3 + [False] * 9 + [False] * 8)
    b = pd.Series([True] * 40 + [False] * 3 + [True] * 9 + [False] * 8)
    result = mcnemar_test(a, b)
    assert result.exact and (result.only_a_correct, result.only_b_correct) == (3, 9)
    assert result.pvalue == pytest.approx(mcnemar([[40, 3], [9, 8]], exact=True).pvalue)
    # large: 10 vs 30 discordant -> chi-square with continuity correction
    a = pd.Series([True] * 100 + [True] * 10 + [False] * 30)
    b = pd.Series([True] * 100 + [False] * 10 + [True] * 30)
    result = mcnemar_test(a, b)
    expected = mcnemar([[100, 10], [30, 0]], exact=False, correction=True)
    assert not result.exact and result.pvalue == pytest.approx(expected.pvalue)
    assert result.statistic == pytest.approx((abs(10 - 30) - 1) ** 2 / 40)


def test_mcnemar_refuses_different_samples():
    with pytest.raises(AdvbenchError, match="same samples"):
        mcnemar_test(pd.Series([True, False], index=[0, 1]), pd.Series([True, False], index=[0, 2]))


def test_worst_case_row_when_attacks_fail_on_different_samples():
    clean = [True] * 6
    first = make_records("d", "pgd", "fixed-epsilon", outcome_rows(clean, [False, True, True, True, True, True]))
    second = make_records("d", "fgsm", "fixed-epsilon", outcome_rows(clean, [True, False, True, True, True, True]))
    third = make_records("d", "deepfool", "minimum-norm",
                         [{**r, "linf": 0.05 if r["sample"] == 2 else 0.5}
                          for r in outcome_rows(clean, [True, True, False, False, True, True])])
    summary = summarize(Run.from_records(pd.concat([first, second, third]), {"d__deepfool": [0.1]})).set_index(["attack", "epsilon"])
    assert summary.loc[("pgd", 0.1), "robust_accuracy"] == pytest.approx(5 / 6)
    assert summary.loc[("deepfool", 0.1), "robust_accuracy"] == pytest.approx(5 / 6)  # sample 3 needs 0.5 > 0.1
    assert summary.loc[("ALL Linf", 0.1), "robust_accuracy"] == pytest.approx(3 / 6)
    assert summary.loc[("ALL Linf", 0.1), "success_rate"] == pytest.approx(3 / 6)


def test_curves_from_minimum_norm_and_fixed_epsilon():
    mn = make_records("d", "df", "minimum-norm", [
        {"sample": i, "label": 0, "clean_pred": 0, "adv_pred": 1, "l2": n, "linf": n} for i, n in enumerate([0.1, 0.2, 0.3, 0.4])
    ], norm="l2")
    curves = robustness_curves(Run.from_records(mn, {"d__df": [0.25]}), points=5)
    at = curves.set_index("epsilon")["accuracy"]
    assert at[0.0] == 1.0 and at[0.25] == 0.5 and at[curves["epsilon"].max()] == 0.0
    fixed = make_records("d", "fgsm", "fixed-epsilon", outcome_rows([True, True], [True, False]))
    points = robustness_curves(Run.from_records(fixed)).set_index("epsilon")["accuracy"]
    assert points.to_dict() == {0.0: 1.0, 0.1: 0.5}


def scored(clean_scores, adv_scores, clean_ok, adv_wrong):
    rows = [{"sample": i, "label": 0, "clean_pred": 0 if ok else 1, "adv_pred": 1 if wrong else 0,
             "clean_score": c, "adv_score": a}
            for i, (c, a, ok, wrong) in enumerate(zip(clean_scores, adv_scores, clean_ok, adv_wrong))]
    return outcomes_at(CellRecords.of(make_records("d", "a", "fixed-epsilon", rows)), 0.1)


def test_auc_perfect_and_uninformative():
    perfect = scored([0.1, 0.2, 0.3, 0.4], [0.9, 0.8, 0.7, 0.6], [True] * 4, [True] * 4)
    assert roc(perfect)[2] == 1.0
    flat = scored([0.5] * 4, [0.5] * 4, [True] * 4, [True] * 4)
    assert roc(flat)[2] == 0.5
    no_adversarials = scored([0.1] * 4, [0.2] * 4, [True] * 4, [False] * 4)
    assert math.isnan(roc(no_adversarials)[2])


def test_detection_rate_at_five_percent_false_alarms():
    clean = list(np.linspace(0, 1, 20))  # 20 clean scores: the top one (1.0) may be flagged at 5%
    out = scored(clean, [0.5, 0.99, 1.5, 2.0] + [0.0] * 16, [True] * 20, [True] * 4 + [False] * 16)
    rate, threshold, alarms = detection_at_false_alarm(out, 0.05)
    assert threshold == pytest.approx(clean[18]) and alarms == pytest.approx(1 / 20)
    assert rate == pytest.approx(3 / 4)  # 0.99, 1.5 and 2.0 exceed the 19th clean score 0.947


def test_paper_001_rates_on_hand_made_table():
    # four samples; accept when score <= T
    out = scored(clean_scores=[0.1, 0.2, 0.6, 0.9], adv_scores=[0.3, 0.8, 0.4, 0.1],
                 clean_ok=[True, False, True, True], adv_wrong=[True, True, False, True])
    rates = reject_rates(out, np.array([0.5])).iloc[0]
    assert rates.clean_accept_rate == 0.5             # Eq. 7: clean 0.1, 0.2 accepted
    assert rates.adversarial_accept_error == 0.5      # Eq. 8: perturbed 0.3 (wrong) and 0.1 (wrong) accepted
    assert rates.accuracy_with_reject == 0.25         # Eq. 14: accepted and correct: sample 0 only
    assert rates.error_with_reject == 0.5             # Eq. 15


def test_mcnemar_table_for_two_defenses_and_refusal():
    a = make_records("A", "pgd", "fixed-epsilon", outcome_rows([True] * 30, [True] * 25 + [False] * 5))
    b = make_records("B", "pgd", "fixed-epsilon", outcome_rows([True] * 30, [False] * 25 + [True] * 5))
    records = pd.concat([a, b])
    run = Run.from_records(records)
    table = mcnemar_table(run, summarize(run), alpha=0.01)
    row = table[table.attack == "pgd"].iloc[0]
    assert (row.only_a_correct, row.only_b_correct) == (25, 5) and row.significant
    assert table[table.attack == "clean"].iloc[0].pvalue == 1.0
    shifted = b.assign(sample=b["sample"] + 100)
    records = pd.concat([a, shifted])
    run = Run.from_records(records)
    refused = mcnemar_table(run, summarize(run))
    assert refused["note"].str.startswith("refused").all()


def test_a_single_attack_row_is_compared_even_when_the_worst_cases_cover_different_attacks():
    """Issue 22: cnn faced fgsm and pgd, the other defense only fgsm; their ALL rows cover different
    attacks (refused), but the fgsm row compares the same attack on the same samples."""
    clean = [True] * 8
    records = pd.concat([
        make_records("a", "fgsm", "fixed-epsilon", outcome_rows(clean, [False] * 6 + [True] * 2)),
        make_records("a", "pgd", "fixed-epsilon", outcome_rows(clean, [False] * 7 + [True])),
        make_records("b", "fgsm", "fixed-epsilon", outcome_rows(clean, [True] * 8)),
        make_records("b", "noise", "fixed-epsilon", outcome_rows(clean, [True] * 8)),
    ])
    run = Run.from_records(records)
    table = mcnemar_table(run, summarize(run)).set_index("attack")
    assert table.loc["fgsm", "note"] == "" and table.loc["fgsm", "only_b_correct"] == 6
    assert table.loc["ALL Linf", "note"].startswith("refused: worst cases over different attacks")


def test_curves_read_at_once_equal_the_outcomes_read_one_epsilon_at_a_time():
    """`robust_matrix` reads every point of a curve at once; each point must be what
    `outcomes_at` and the worst case say at that epsilon alone (missing samples included)."""
    clean = [True, True, False, True, True, True]
    fixed = pd.concat([make_records("d", "pgd", "fixed-epsilon", outcome_rows(clean, wrong), cell="d__pgd")
                       .assign(epsilon=eps) for eps, wrong in ((0.1, [False, True, True, True, False, True]),
                                                               (0.3, [True, True, True, False, False, False]))])
    norms = [0.05, 0.2, 0.5, float("nan"), 0.25, 0.12]
    rows = [{**r, "linf": n} for r, n in zip(outcome_rows(clean, [True, True, True, True, True, False]), norms)]
    minimum = make_records("d", "df", "minimum-norm", rows[:5])  # sample 5 missing from this cell
    records = pd.concat([fixed, minimum])
    run = Run.from_records(records, {"d__df": [0.2]})
    curves = robustness_curves(run, points=7)
    cells = {cell.attack: cell for cell in run.cells.values()}
    for row in curves.itertuples():
        if row.epsilon == 0:
            continue
        if row.attack == "ALL Linf":
            expected = worst_case_outcomes(run, [cells["pgd"], cells["df"]], row.epsilon)["robust"].mean()
        else:
            expected = outcomes_at(cells[row.attack], row.epsilon)["robust"].mean()
        assert row.accuracy == pytest.approx(expected), (row.attack, row.epsilon)


def test_holm_matches_statsmodels():
    import numpy as np
    from statsmodels.stats.multitest import multipletests

    from advbench.stats import holm_adjusted

    rng = np.random.default_rng(0)
    for n in (1, 2, 5, 40):
        p = rng.random(n) ** 3
        assert holm_adjusted(list(p)) == pytest.approx(list(multipletests(p, method="holm")[1]), abs=1e-15)


def test_wilson_interval_matches_statsmodels():
    from statsmodels.stats.proportion import proportion_confint

    for n in (1, 2, 7, 30, 240, 1000):
        for k in range(0, n + 1, max(1, n // 37)):
            low, high = proportion_confint(k, n, alpha=0.05, method="wilson")
            assert wilson_interval(k, n) == pytest.approx((low, high), abs=1e-15)
