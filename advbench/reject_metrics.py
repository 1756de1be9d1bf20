"""Metrics of defenses with a reject option (detectors, generative classifiers): ROC and AUC of
the reject score, detection at a fixed false-alarm rate (paper 002), and paper 001's accept /
reject rates over thresholds. They read each cell's outcomes from the read model (`read_model.Run`).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .read_model import CellRecords, Run
from .settings import DEFAULT_FALSE_ALARM


REJECT_COLUMNS = [
    "defense", "attack", "norm", "epsilon", "threshold", "auc", "detection_rate", "false_alarm_rate",
    "clean_accept_rate", "adversarial_accept_error", "accuracy_with_reject", "error_with_reject",
]


def has_reject_scores(cell: CellRecords) -> bool:
    return bool(cell.frame["clean_score"].notna().all() and cell.frame["adv_score"].notna().any())


def _scores(out: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(negatives, positives): the reject scores of clean inputs and of successful adversarials."""
    return out["clean_score"].to_numpy(), out.loc[out["fooled"], "score"].to_numpy()


def roc(out: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, float]:
    """ROC of the reject score separating clean inputs (negatives) from successful
    adversarial examples (positives); returns (fpr, tpr, auc), auc NaN without positives.
    One point per distinct score, from (0, 0) to (1, 1): scikit-learn's `roc_curve` without
    dropping collinear points (a test compares), and without its import, which cost each run's
    figures 1.5 to 2.5 s."""
    negatives, positives = _scores(out)
    if len(positives) == 0 or len(negatives) == 0:
        return np.array([]), np.array([]), math.nan
    scores = np.r_[negatives, positives]
    is_positive = np.r_[np.zeros(len(negatives)), np.ones(len(positives))]
    order = np.argsort(-scores, kind="mergesort")
    scores, is_positive = scores[order], is_positive[order]
    last_of_each = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]  # a threshold between distinct scores
    true_positives = np.cumsum(is_positive)[last_of_each]
    false_positives = (last_of_each + 1) - true_positives
    fpr = np.r_[0.0, false_positives / len(negatives)]
    tpr = np.r_[0.0, true_positives / len(positives)]
    return fpr, tpr, roc_auc(out)


def roc_auc(out: pd.DataFrame) -> float:
    """Area under the ROC curve as the Mann-Whitney statistic: the chance that a successful
    adversarial scores above a clean input, ties counting half (scikit-learn's `roc_auc_score`,
    which a test compares; importing scikit-learn costs a report about a second)."""
    negatives, positives = _scores(out)
    if len(positives) == 0 or len(negatives) == 0:
        return math.nan
    scores = np.r_[negatives, positives]
    order = np.argsort(scores, kind="mergesort")
    _, first, counts = np.unique(scores[order], return_index=True, return_counts=True)
    ranks = np.empty(len(scores))
    ranks[order] = np.repeat(first + (counts + 1) / 2, counts)  # 1-based, ties share their mean rank
    wins = ranks[len(negatives):].sum() - len(positives) * (len(positives) + 1) / 2
    return float(wins / (len(positives) * len(negatives)))


def detection_at_false_alarm(out: pd.DataFrame, false_alarm: float = DEFAULT_FALSE_ALARM) -> tuple[float, float, float]:
    """Detection rate of successful adversarial examples with the threshold that flags at
    most `false_alarm` of clean inputs (paper 002); returns (rate, threshold, achieved false alarms)."""
    clean = np.sort(out["clean_score"].to_numpy())
    positives = out.loc[out["fooled"], "score"].to_numpy()
    if len(clean) == 0 or len(positives) == 0:
        return math.nan, math.nan, math.nan
    index = min(max(math.ceil((1 - false_alarm) * len(clean)) - 1, 0), len(clean) - 1)
    threshold = float(clean[index])
    return float((positives > threshold).mean()), threshold, float((clean > threshold).mean())


def reject_rates(out: pd.DataFrame, thresholds: np.ndarray) -> pd.DataFrame:
    """Paper 001 Eq. 7-8 and 14-15 at each threshold T (accept when score <= T):
    clean_accept_rate (TPR), adversarial_accept_error (FPR: accepted and misclassified
    perturbed inputs), accuracy_with_reject (accepted and correct clean inputs) and
    error_with_reject (equal to the FPR: accepted, misclassified perturbed inputs)."""
    n = len(out)
    clean, score = out["clean_score"].to_numpy(), out["score"].to_numpy()
    clean_correct = (out["clean_pred"] == out["label"]).to_numpy()
    adv_wrong = (out["pred"] != out["label"]).to_numpy()
    accepted_clean = clean[None, :] <= thresholds[:, None]
    accepted_adv = score[None, :] <= thresholds[:, None]
    frame = pd.DataFrame({
        "threshold": thresholds,
        "clean_accept_rate": accepted_clean.sum(1) / n,
        "adversarial_accept_error": (accepted_adv & adv_wrong).sum(1) / n,
        "accuracy_with_reject": (accepted_clean & clean_correct).sum(1) / n,
    })
    frame["error_with_reject"] = frame["adversarial_accept_error"]
    return frame


def reject_summary(run: Run, false_alarm: float = DEFAULT_FALSE_ALARM) -> pd.DataFrame:
    """AUC, detection rate at a fixed false-alarm rate and the Eq. 7-8/14-15 rates at each
    defense's own threshold, for every cell and epsilon of a defense with a reject score."""
    rows = []
    for cell in run.cells.values():
        if not has_reject_scores(cell):
            continue
        info = run.defenses.get(cell.defense)
        threshold = info.reject_threshold if info is not None else None
        for eps in cell.epsilons:
            out = run.outcomes(cell, eps)
            detected, _, alarms = detection_at_false_alarm(out, false_alarm)
            row = {"defense": cell.defense, "attack": cell.attack, "norm": cell.norm.value, "epsilon": eps,
                   "threshold": threshold, "auc": roc_auc(out), "detection_rate": detected,
                   "false_alarm_rate": alarms}
            if threshold is not None:
                row.update(reject_rates(out, np.array([threshold])).iloc[0].drop("threshold").to_dict())
            rows.append(row)
    return pd.DataFrame(rows, columns=REJECT_COLUMNS)


def reject_tradeoff(run: Run) -> pd.DataFrame:
    """Rates over all thresholds for each reject-option cell and epsilon (for curves), and one
    point per plain classifier (accuracy = clean accuracy, error = 1 - robust accuracy)."""
    frames = []
    for cell in run.cells.values():
        rejecting = has_reject_scores(cell)
        for eps in cell.epsilons:
            out = run.outcomes(cell, eps)
            if rejecting:
                thresholds = np.unique(np.r_[out["clean_score"].to_numpy(), out["score"].to_numpy(), -np.inf, np.inf])
                frame = reject_rates(out, thresholds)
            else:
                frame = pd.DataFrame([{"threshold": math.nan, "clean_accept_rate": 1.0,
                                       "adversarial_accept_error": 1 - out["robust"].mean(),
                                       "accuracy_with_reject": out["clean_ok"].mean(),
                                       "error_with_reject": 1 - out["robust"].mean()}])
            frames.append(frame.assign(defense=cell.defense, attack=cell.attack, norm=cell.norm.value,
                                       reject_option=rejecting, epsilon=eps)[TRADEOFF_COLUMNS])
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


TRADEOFF_COLUMNS = ["defense", "attack", "norm", "reject_option", "epsilon", "threshold", "clean_accept_rate",
                    "adversarial_accept_error", "accuracy_with_reject", "error_with_reject"]
