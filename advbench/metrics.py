"""Metrics as pure functions of per-sample records; nothing here runs a model.

The core is `outcomes_at(cell, eps)`: what each sample of one cell looks like to the
defense at one epsilon. For a fixed-epsilon attack that is the record at that
epsilon; for a minimum-norm attack it is the attack's example when its norm is
within eps, and the clean input otherwise (the attacker had nothing better). Every
accuracy, success rate, worst case, curve and reject metric is computed from it.
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import pandas as pd

from .contract import ENSEMBLE_ORDER, ENSEMBLE_VERSIONS, SummaryKind
from .norms import BALL_TOLERANCE, Norm
from .stats import wilson_interval

SUMMARY_COLUMNS = [
    "defense", "attack", "norm", "kind", "epsilon", "samples", "clean_accuracy", "clean_accuracy_low",
    "clean_accuracy_high", "robust_accuracy", "robust_accuracy_low", "robust_accuracy_high", "success_rate",
    "mean_l2", "median_l2", "mean_linf", "median_linf", "rho", "seconds_per_sample", "samples_per_second",
    "queries_per_sample", "covers",
]


def all_label(norm: str) -> str:
    """The worst case's row name, printed as the field writes norms: ALL Linf, ALL L2."""
    return f"ALL {Norm(norm).label}"


def is_minimum_norm(cell: pd.DataFrame) -> bool:
    return bool((cell["kind"] == SummaryKind.MINIMUM_NORM).all())


def attack_norms(records: pd.DataFrame) -> pd.Series:
    """Perturbation size of each record in its attack's own norm."""
    return records["l2"].where(records["norm"] == Norm.L2.value, records["linf"])


def clean_correct(cell: pd.DataFrame) -> pd.Series:
    """Per-sample clean correctness of a cell (the same in every row of a sample)."""
    rows = cell.drop_duplicates("sample").set_index("sample")
    return rows["clean_pred"] == rows["label"]


def clean_accuracy(cell: pd.DataFrame) -> float:
    return float(clean_correct(cell).mean())


def cell_epsilons(cell: pd.DataFrame, requested: Iterable[float] = ()) -> list[float]:
    """Epsilons a cell can be read at: its own for fixed-epsilon attacks; the requested
    ones plus `inf` (unbounded) for minimum-norm attacks."""
    if is_minimum_norm(cell):
        return sorted(set(requested) | {math.inf})
    return sorted(set(cell["epsilon"].dropna()))


def outcomes_at(cell: pd.DataFrame, eps: float) -> pd.DataFrame:
    """Per-sample outcome of one cell at `eps`, indexed by sample.

    Columns: label, clean_pred, clean_score, pred, score, l2, linf, x_l2, seconds,
    queries, clean_ok, fooled (clean-correct and now wrong), robust.
    """
    if is_minimum_norm(cell):
        rows = cell.copy()
        beyond = ~(attack_norms(rows) <= eps + BALL_TOLERANCE)
        rows.loc[beyond, "adv_pred"] = rows.loc[beyond, "clean_pred"]
        rows.loc[beyond, "adv_score"] = rows.loc[beyond, "clean_score"]
        rows.loc[beyond, ["l2", "linf"]] = 0.0
    else:
        rows = cell[np.isclose(cell["epsilon"], eps)]
        if rows.empty:
            raise KeyError(f"cell {cell['cell'].iloc[0]} was not run at epsilon {eps:g}")
    out = rows.set_index("sample")[["label", "clean_pred", "clean_score", "adv_pred", "adv_score", "l2", "linf",
                                    "x_l2", "seconds", "queries"]].rename(columns={"adv_pred": "pred",
                                                                                   "adv_score": "score"})
    out["clean_ok"] = out["clean_pred"] == out["label"]
    out["fooled"] = out["clean_ok"] & (out["pred"] != out["label"])
    out["robust"] = out["clean_ok"] & ~out["fooled"]
    return out


class Outcomes:
    """Per-sample outcomes of each cell at each epsilon, and of each worst case, computed once
    and shared by everything a report derives from them (summary, worst cases, curves,
    comparisons): without it the worst cases re-read every cell at every epsilon and a report's
    cost grew with the square of its cells. Keyed by cell id; use one per set of records."""

    def __init__(self) -> None:
        self._cells: dict[tuple[str, float], pd.DataFrame] = {}
        self._worst: dict[tuple[tuple[str, ...], float], pd.DataFrame] = {}
        self._measured: dict[str, list[float] | None] = {}  # a fixed-epsilon cell's epsilons; None: minimum-norm

    def readable_at(self, cell: pd.DataFrame, eps: float) -> list[float]:
        """The epsilons of `cell` whose examples are valid adversarials at `eps`: any point of a
        smaller ball lies in the larger one, so a fixed-epsilon cell counts at every measured
        epsilon up to `eps`; a minimum-norm cell is read at `eps` itself."""
        cell_id = str(cell["cell"].iloc[0])
        if cell_id not in self._measured:
            self._measured[cell_id] = None if is_minimum_norm(cell) else cell_epsilons(cell)
        measured = self._measured[cell_id]
        if measured is None:
            return [eps]
        return [e for e in measured if 0 < e <= eps + BALL_TOLERANCE]

    def at(self, cell: pd.DataFrame, eps: float) -> pd.DataFrame:
        """`outcomes_at(cell, eps)`, computed on first use."""
        key = (str(cell["cell"].iloc[0]), float(eps))
        if key not in self._cells:
            self._cells[key] = outcomes_at(cell, eps)
        return self._cells[key]

    def worst_case(self, cells: list[pd.DataFrame], eps: float) -> pd.DataFrame:
        """`worst_case_outcomes(cells, eps)`, computed on first use."""
        key = (tuple(str(c["cell"].iloc[0]) for c in cells), float(eps))
        if key not in self._worst:
            self._worst[key] = worst_case_outcomes(cells, eps, self)
        return self._worst[key]


def _accuracy_columns(prefix: str, correct: pd.Series) -> dict[str, float]:
    n, k = len(correct), int(correct.sum())
    low, high = wilson_interval(k, n)
    return {prefix: k / n if n else math.nan, f"{prefix}_low": low, f"{prefix}_high": high}


def _summary_row(first: pd.Series, attack: str, kind: str, eps: float, out: pd.DataFrame,
                 distortion: bool = True) -> dict[str, object]:
    successful = out[out["fooled"]]
    seconds = out["seconds"].mean()
    clean_ok = out["clean_ok"]
    row: dict[str, object] = {
        "defense": first["defense"], "attack": attack, "norm": first["norm"], "kind": kind, "epsilon": eps,
        "samples": len(out),
        **_accuracy_columns("clean_accuracy", clean_ok),
        **_accuracy_columns("robust_accuracy", out["robust"]),
        "success_rate": successful.shape[0] / clean_ok.sum() if clean_ok.any() else math.nan,
    }
    if distortion:
        row.update({
            "mean_l2": successful["l2"].mean(), "median_l2": successful["l2"].median(),
            "mean_linf": successful["linf"].mean(), "median_linf": successful["linf"].median(),
            "rho": (successful["l2"] / successful["x_l2"]).mean(),
            "seconds_per_sample": seconds,
            "samples_per_second": 1.0 / seconds if seconds > 0 else math.nan,
            "queries_per_sample": out["queries"].mean(),
        })
    return row


def summarize_cell(cell: pd.DataFrame, epsilons: Iterable[float] = (), outcomes: Outcomes | None = None,
                   ) -> pd.DataFrame:
    """One summary row per epsilon for one cell; minimum-norm cells also get an `inf` row."""
    first = cell.iloc[0]
    outcomes = outcomes or Outcomes()
    rows = [_summary_row(first, first["attack"], first["kind"], eps, outcomes.at(cell, eps))
            for eps in cell_epsilons(cell, epsilons)]
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def covered_attacks(cells: list[pd.DataFrame], eps: float, outcomes: Outcomes | None = None) -> list[str]:
    """The attacks a worst case at `eps` covers (those with examples valid at `eps`)."""
    read = outcomes or Outcomes()
    return [c["attack"].iloc[0] for c in cells if read.readable_at(c, eps)]


def worst_case_outcomes(cells: list[pd.DataFrame], eps: float, outcomes: Outcomes | None = None) -> pd.DataFrame:
    """A sample is robust at `eps` only if it survives every attack with examples valid at
    `eps` (paper 004's "ALL" rows): minimum-norm attacks read at `eps`, fixed-epsilon attacks
    at each of their epsilons up to `eps`; so ALL is at or below every attack it covers, at
    every epsilon, and never rises with epsilon."""
    read = outcomes or Outcomes()
    outcomes_list = [read.at(cell, e) for cell in cells for e in read.readable_at(cell, eps)]
    combined = cells[0].drop_duplicates("sample").set_index("sample")[["label", "clean_pred", "clean_score", "x_l2"]]
    combined = combined.copy()
    combined["clean_ok"] = combined["clean_pred"] == combined["label"]
    combined["robust"] = np.logical_and.reduce(
        [combined["clean_ok"].to_numpy()] + [o["robust"].reindex(combined.index, fill_value=False).to_numpy()
                                             for o in outcomes_list])
    combined["fooled"] = combined["clean_ok"] & ~combined["robust"]
    combined["seconds"] = sum((o["seconds"] for o in outcomes_list), 0.0)
    combined["queries"] = sum((o["queries"] for o in outcomes_list), 0.0)
    return combined


def worst_case_epsilons(cells: list[pd.DataFrame], requested: dict[str, list[float]]) -> list[float]:
    """Every finite epsilon at which some attack of the norm says something."""
    return sorted({e for c in cells for e in cell_epsilons(c, requested.get(c["cell"].iloc[0], []))
                   if math.isfinite(e) and e > 0})


def group_cells(records: pd.DataFrame) -> dict[tuple[str, str], list[pd.DataFrame]]:
    """Cells of each (defense, norm), in record order."""
    groups: dict[tuple[str, str], list[pd.DataFrame]] = {}
    for _, cell in records.groupby("cell", sort=False):
        first = cell.iloc[0]
        groups.setdefault((first["defense"], first["norm"]), []).append(cell)
    return groups


def summarize(records: pd.DataFrame, epsilons_by_cell: dict[str, list[float]],
              outcomes: Outcomes | None = None) -> pd.DataFrame:
    """Summary rows for every cell, and an "ALL <norm>" worst-case row set per defense and
    norm when a defense faced two or more attacks of that norm."""
    outcomes = outcomes or Outcomes()
    frames = []
    for (_, norm), cells in group_cells(records).items():
        for cell in cells:
            frames.append(summarize_cell(cell, epsilons_by_cell.get(cell["cell"].iloc[0], []), outcomes))
        if len(cells) >= 2:
            first = cells[0].iloc[0]
            rows = [{**_summary_row(first, all_label(norm), SummaryKind.WORST_CASE.value, eps, outcomes.worst_case(cells, eps),
                                    distortion=False), "covers": "+".join(covered_attacks(cells, eps, outcomes))}
                    for eps in worst_case_epsilons(cells, epsilons_by_cell)]
            frames.append(pd.DataFrame(rows, columns=SUMMARY_COLUMNS))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=SUMMARY_COLUMNS)


# ----------------------------------------------------------------------------- robustness curves

CURVE_COLUMNS = ["defense", "attack", "norm", "kind", "epsilon", "accuracy"]


def robustness_curves(records: pd.DataFrame, epsilons_by_cell: dict[str, list[float]],
                      points: int = 101, outcomes: Outcomes | None = None) -> pd.DataFrame:
    """Accuracy against epsilon: a dense step curve from each minimum-norm attack's norms,
    one point per epsilon for fixed-epsilon attacks (with the clean accuracy at 0), and the
    worst case over a norm's attacks where all of them can be read. Each curve is read at all
    its epsilons at once (`robust_matrix`): the same numbers as `outcomes_at` per epsilon."""
    outcomes = outcomes or Outcomes()
    rows: list[dict[str, object]] = []
    for (defense, norm), cells in group_cells(records).items():
        dense: set[float] = set()
        for cell in cells:
            first = cell.iloc[0]
            if is_minimum_norm(cell):
                requested = epsilons_by_cell.get(first["cell"], [])
                norms = attack_norms(cell)
                finite = norms[np.isfinite(norms) & (cell["adv_pred"] != cell["label"])]
                top = max([*requested, float(finite.max()) if len(finite) else 0.0]) * 1.05 or 1.0
                grid = sorted(set(np.linspace(0.0, top, points)) | set(requested))
            else:
                grid = [0.0, *cell_epsilons(cell)]
            dense.update(grid)
            index = pd.Index(cell["sample"].drop_duplicates())
            accuracy = robust_matrix(cell, grid, index, outcomes, worst_case=False).mean(axis=0)
            for eps, value in zip(grid, accuracy):
                rows.append({"defense": defense, "attack": first["attack"], "norm": norm, "kind": first["kind"],
                             "epsilon": float(eps),
                             "accuracy": float(value) if eps > 0 else float(clean_accuracy(cell))})
        if len(cells) >= 2:  # the worst case at every epsilon any curve of this norm has a point at
            grid = sorted(dense)
            index = pd.Index(cells[0]["sample"].drop_duplicates())
            first_rows = cells[0].drop_duplicates("sample").set_index("sample").reindex(index)
            clean_ok = first_rows["clean_pred"] == first_rows["label"]
            robust = clean_ok.to_numpy()[:, None] & np.logical_and.reduce(
                [robust_matrix(cell, grid, index, outcomes, worst_case=True) for cell in cells])
            for eps, value in zip(grid, robust.mean(axis=0)):
                rows.append({"defense": defense, "attack": all_label(norm), "norm": norm,
                             "kind": SummaryKind.WORST_CASE.value, "epsilon": float(eps),
                             "accuracy": float(value) if eps > 0 else float(clean_accuracy(cells[0]))})
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)


def robust_matrix(cell: pd.DataFrame, grid: list[float], index: pd.Index, outcomes: Outcomes,
                  worst_case: bool) -> np.ndarray:
    """[samples in `index`, epsilons in `grid`]: whether each sample is robust to the cell at each
    epsilon, as `outcomes_at` says; with `worst_case`, as the worst case reads a fixed-epsilon
    cell (`readable_at`: robust at every measured epsilon up to it, and all robust where it
    measured none, adding nothing). A sample the cell lacks is not robust."""
    eps = np.asarray(grid, dtype=float)
    if is_minimum_norm(cell):
        rows = cell.drop_duplicates("sample").set_index("sample").reindex(index)
        present = rows["label"].notna().to_numpy()
        within = (attack_norms(rows).to_numpy()[:, None] <= eps[None, :] + BALL_TOLERANCE)
        wrong = (rows["adv_pred"] != rows["label"]).to_numpy()[:, None]
        ok = (present & (rows["clean_pred"] == rows["label"]).to_numpy())[:, None]
        return ok & ~(within & wrong)
    measured = cell_epsilons(cell)
    if not worst_case:  # the cell's own curve: its outcomes at each of its epsilons (0: clean, by the caller)
        return np.stack([outcomes.at(cell, e)["robust"].reindex(index, fill_value=False).to_numpy() if e > 0
                         else np.zeros(len(index), dtype=bool) for e in eps], axis=1)
    columns = [outcomes.at(cell, e)["robust"].reindex(index, fill_value=False).to_numpy()
               for e in measured if e > 0]
    positive = [e for e in measured if e > 0]
    cumulative = np.logical_and.accumulate(np.stack(columns, axis=1), axis=1) if columns else None
    out = np.full((len(index), len(eps)), True)
    for j, value in enumerate(eps):
        readable = [k for k, e in enumerate(positive) if e <= value + BALL_TOLERANCE]
        if readable:
            out[:, j] = cumulative[:, readable[-1]]  # type: ignore[index]
    return out


def epsilon_at_accuracy(curves: pd.DataFrame, level: float = 0.5) -> pd.DataFrame:
    """The smallest epsilon on each curve where accuracy falls below `level` (inf if never)."""
    rows = []
    for (defense, attack, norm), curve in curves.groupby(["defense", "attack", "norm"], sort=False):
        below = curve[curve["accuracy"] < level]
        rows.append({"defense": defense, "attack": attack, "norm": norm,
                     "epsilon": float(below["epsilon"].min()) if len(below) else math.inf})
    return pd.DataFrame(rows, columns=["defense", "attack", "norm", "epsilon"])


# ----------------------------------------------------------------------------- reject option

def certified_summary(records: pd.DataFrame) -> pd.DataFrame:
    """Per defense with certified radii (paper 004 Eq. 7): the mean radius (0 for misclassified
    samples) and the fraction of samples certified at each L2 epsilon of the run's L2 cells."""
    if "certified_l2" not in records or records["certified_l2"].isna().all():
        return pd.DataFrame(columns=["defense", "epsilon", "samples", "mean_radius", "certified"])
    l2_epsilons = sorted({float(e) for e in records.loc[records["norm"] == Norm.L2.value, "epsilon"].dropna() if e > 0})
    rows = []
    for defense, group in records.dropna(subset=["certified_l2"]).groupby("defense", sort=False):
        radii = group.drop_duplicates("sample")["certified_l2"]
        for eps in l2_epsilons or [math.nan]:
            rows.append({"defense": defense, "epsilon": eps, "samples": len(radii), "mean_radius": radii.mean(),
                         "certified": math.nan if math.isnan(eps) else float((radii > eps).mean())})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- ensembles

BREAKDOWN_COLUMNS = ["defense", "attack", "norm", "epsilon", "samples", "clean_accuracy", "stage", "accuracy"]


def ensemble_breakdown(records: pd.DataFrame) -> pd.DataFrame:
    """AutoAttack's log as a table: robust accuracy after each component of an ensemble cell
    (a sample counts as beaten from the component that beat it on), then the runner's own
    verified judgement of the final examples (stage "verified")."""
    rows = []
    for _, cell in records.groupby("cell", sort=False):
        if "component" not in cell or not (cell["component"].astype(str) != "").any() or is_minimum_norm(cell):
            continue
        head = cell.iloc[0]
        present = set(cell["component"].astype(str)) - {""}
        version = next((v for v in ENSEMBLE_VERSIONS.values() if present <= set(v)), None)
        stages = list(version) if version else [c for c in ENSEMBLE_ORDER if c in present] + sorted(
            present - set(ENSEMBLE_ORDER))
        for eps in cell_epsilons(cell):
            rows_at = cell[np.isclose(cell["epsilon"], eps)].set_index("sample")
            out = outcomes_at(cell, eps)
            clean_ok = out["clean_ok"]
            base = {"defense": head["defense"], "attack": head["attack"], "norm": head["norm"], "epsilon": eps,
                    "samples": len(out), "clean_accuracy": float(clean_ok.mean())}
            beaten = pd.Series(False, index=out.index)
            for stage in stages:
                beaten |= rows_at["component"].astype(str).reindex(out.index) == stage
                rows.append({**base, "stage": stage, "accuracy": float((clean_ok & ~beaten).mean())})
            rows.append({**base, "stage": "verified", "accuracy": float(out["robust"].mean())})
    return pd.DataFrame(rows, columns=BREAKDOWN_COLUMNS)


SEED_COLUMNS = ["group", "attack", "norm", "epsilon", "seeds", "mean", "sd", "members"]


def seed_spread(summary: pd.DataFrame, groups: dict[str, str]) -> pd.DataFrame:
    """Mean and standard deviation of accuracy across independently trained copies.

    `groups` maps each defense to its group (its spec without the seed); groups with two or
    more members get one row per table row (clean first): how much of a difference between
    defenses is the luck of one training run, beside each model's own sampling interval."""
    members: dict[str, list[str]] = {}
    for defense in dict.fromkeys(summary["defense"]):
        members.setdefault(groups.get(defense, defense), []).append(defense)
    rows = []
    for group, defenses in members.items():
        if len(defenses) < 2:
            continue
        block = summary[summary["defense"].isin(defenses)]
        clean = block.drop_duplicates("defense")["clean_accuracy"]
        rows.append({"group": group, "attack": "clean", "norm": "", "epsilon": math.nan, "seeds": len(clean),
                     "mean": float(clean.mean()), "sd": float(clean.std(ddof=1)), "members": ", ".join(defenses)})
        for (attack, norm, eps), same in block.groupby(["attack", "norm", "epsilon"], sort=False):
            if math.isinf(float(eps)) or len(same) < 2:
                continue
            rows.append({"group": group, "attack": attack, "norm": norm, "epsilon": float(eps), "seeds": len(same),
                         "mean": float(same["robust_accuracy"].mean()), "sd": float(same["robust_accuracy"].std(ddof=1)),
                         "members": ", ".join(same["defense"])})
    return pd.DataFrame(rows, columns=SEED_COLUMNS)
