"""Metrics as pure functions of a run's read model (`read_model.Run`); nothing here runs a model.

Every accuracy, success rate, worst case and curve is computed from the per-sample outcomes
the read model serves (`Run.outcomes(cell, eps)`, each computed once).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .contract import ENSEMBLE_ORDER, ENSEMBLE_VERSIONS, SummaryKind
from .norms import BALL_TOLERANCE, Norm
from .read_model import CellRecords, Run, covered_attacks
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


def _accuracy_columns(prefix: str, correct: pd.Series) -> dict[str, float]:
    n, k = len(correct), int(correct.sum())
    low, high = wilson_interval(k, n)
    return {prefix: k / n if n else math.nan, f"{prefix}_low": low, f"{prefix}_high": high}


def _summary_row(cell: CellRecords, attack: str, kind: SummaryKind, eps: float, out: pd.DataFrame,
                 distortion: bool = True) -> dict[str, object]:
    successful = out[out["fooled"]]
    seconds = out["seconds"].mean()
    clean_ok = out["clean_ok"]
    row: dict[str, object] = {
        "defense": cell.defense, "attack": attack, "norm": cell.norm.value, "kind": kind.value, "epsilon": eps,
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


def summarize_cell(run: Run, cell: CellRecords) -> pd.DataFrame:
    """One summary row per epsilon for one cell; minimum-norm cells also get an `inf` row."""
    rows = [_summary_row(cell, cell.attack, SummaryKind(cell.kind.value), eps, run.outcomes(cell, eps))
            for eps in cell.epsilons]
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def worst_case_epsilons(cells: list[CellRecords]) -> list[float]:
    """Every finite epsilon at which some attack of the norm says something."""
    return sorted({e for cell in cells for e in cell.epsilons if math.isfinite(e) and e > 0})


def summarize(run: Run) -> pd.DataFrame:
    """Summary rows for every cell, and an "ALL <norm>" worst-case row set per defense and
    norm when a defense faced two or more attacks of that norm."""
    frames = []
    for (_, norm), cells in run.groups.items():
        frames += [summarize_cell(run, cell) for cell in cells]
        if len(cells) >= 2:
            rows = [{**_summary_row(cells[0], all_label(norm), SummaryKind.WORST_CASE, eps, run.worst_case(cells, eps),
                                    distortion=False), "covers": "+".join(covered_attacks(cells, eps))}
                    for eps in worst_case_epsilons(cells)]
            frames.append(pd.DataFrame(rows, columns=SUMMARY_COLUMNS))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=SUMMARY_COLUMNS)


# ----------------------------------------------------------------------------- robustness curves

CURVE_COLUMNS = ["defense", "attack", "norm", "kind", "epsilon", "accuracy"]


def robustness_curves(run: Run, points: int = 101) -> pd.DataFrame:
    """Accuracy against epsilon: a dense step curve from each minimum-norm attack's norms,
    one point per epsilon for fixed-epsilon attacks (with the clean accuracy at 0), and the
    worst case over a norm's attacks where all of them can be read. Each curve is read at all
    its epsilons at once (`robust_matrix`): the same numbers as the outcomes per epsilon."""
    rows: list[dict[str, object]] = []
    for (defense, norm), cells in run.groups.items():
        dense: set[float] = set()
        for cell in cells:
            if cell.minimum_norm:
                norms = cell.attack_norms
                finite = norms[np.isfinite(norms) & (cell.frame["adv_pred"] != cell.frame["label"])]
                top = max([*cell.requested, float(finite.max()) if len(finite) else 0.0]) * 1.05 or 1.0
                grid = sorted(set(np.linspace(0.0, top, points)) | set(cell.requested))
            else:
                grid = [0.0, *cell.measured]
            dense.update(grid)
            accuracy = robust_matrix(run, cell, grid, cell.samples, worst_case=False).mean(axis=0)
            clean = float(cell.clean_correct.mean())
            rows += [{"defense": defense, "attack": cell.attack, "norm": norm.value, "kind": cell.kind.value,
                      "epsilon": float(eps), "accuracy": float(value) if eps > 0 else clean}
                     for eps, value in zip(grid, accuracy)]
        if len(cells) >= 2:  # the worst case at every epsilon any curve of this norm has a point at
            grid = sorted(dense)
            index = cells[0].samples
            robust = cells[0].clean_correct.to_numpy()[:, None] & np.logical_and.reduce(
                [robust_matrix(run, cell, grid, index, worst_case=True) for cell in cells])
            clean = float(cells[0].clean_correct.mean())
            rows += [{"defense": defense, "attack": all_label(norm), "norm": norm.value,
                      "kind": SummaryKind.WORST_CASE.value, "epsilon": float(eps),
                      "accuracy": float(value) if eps > 0 else clean}
                     for eps, value in zip(grid, robust.mean(axis=0))]
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)


def robust_matrix(run: Run, cell: CellRecords, grid: list[float], index: pd.Index, worst_case: bool) -> np.ndarray:
    """[samples in `index`, epsilons in `grid`]: whether each sample is robust to the cell at each
    epsilon, as its outcomes say; with `worst_case`, as the worst case reads a fixed-epsilon
    cell (`readable_at`: robust at every measured epsilon up to it, and all robust where it
    measured none, adding nothing). A sample the cell lacks is not robust."""
    eps = np.asarray(grid, dtype=float)
    if cell.minimum_norm:
        rows = cell.by_sample.reindex(index)
        present = rows["label"].notna().to_numpy()
        norms = rows["l2" if cell.norm is Norm.L2 else "linf"].to_numpy()
        within = norms[:, None] <= eps[None, :] + BALL_TOLERANCE
        wrong = (rows["adv_pred"] != rows["label"]).to_numpy()[:, None]
        ok = (present & (rows["clean_pred"] == rows["label"]).to_numpy())[:, None]
        return ok & ~(within & wrong)

    def robust_at(e: float) -> np.ndarray:
        return run.outcomes(cell, e)["robust"].reindex(index, fill_value=False).to_numpy()

    if not worst_case:  # the cell's own curve: its outcomes at each of its epsilons (0: clean, by the caller)
        return np.stack([robust_at(e) if e > 0 else np.zeros(len(index), dtype=bool) for e in eps], axis=1)
    positive = [e for e in cell.measured if e > 0]
    out = np.full((len(index), len(eps)), True)
    if not positive:
        return out
    cumulative = np.logical_and.accumulate(np.stack([robust_at(e) for e in positive], axis=1), axis=1)
    for j, value in enumerate(eps):
        readable = [k for k, e in enumerate(positive) if e <= value + BALL_TOLERANCE]
        if readable:
            out[:, j] = cumulative[:, readable[-1]]
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


def ensemble_breakdown(run: Run) -> pd.DataFrame:
    """AutoAttack's log as a table: robust accuracy after each component of an ensemble cell
    (a sample counts as beaten from the component that beat it on), then the runner's own
    verified judgement of the final examples (stage "verified")."""
    rows = []
    for cell in run.cells.values():
        frame = cell.frame
        if "component" not in frame or not (frame["component"].astype(str) != "").any() or cell.minimum_norm:
            continue
        present = set(frame["component"].astype(str)) - {""}
        version = next((v for v in ENSEMBLE_VERSIONS.values() if present <= set(v)), None)
        stages = list(version) if version else [c for c in ENSEMBLE_ORDER if c in present] + sorted(
            present - set(ENSEMBLE_ORDER))
        for eps in cell.measured:
            components = cell.rows_at(eps)["component"].astype(str)
            out = run.outcomes(cell, eps)
            clean_ok = out["clean_ok"]
            base = {"defense": cell.defense, "attack": cell.attack, "norm": cell.norm.value, "epsilon": eps,
                    "samples": len(out), "clean_accuracy": float(clean_ok.mean())}
            beaten = pd.Series(False, index=out.index)
            for stage in stages:
                beaten |= components.reindex(out.index) == stage
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
