"""The story on one screen: a headline per norm, each defense's worst case at every epsilon, the
checks in a line or two, and where the full tables are (`advbench report`).

What `run` and `attack` print by default: at most about 60 lines and 100 columns for a grid of
a handful of defenses, whatever the number of attacks (the paper view grows with them).
"""

from __future__ import annotations

import math

import pandas as pd

from ..contract import CellRole, SummaryKind
from ..trust import UNRELIABLE
from . import Report
from .tables import REJECT_NOTE, epsilon, norm_label, rejecting_defenses, with_interval
from .terminal import TextTable

FLAGS_SHOWN = 4


def _evaluated(summary: pd.DataFrame) -> pd.DataFrame:
    return summary[summary["role"] != CellRole.SANITY.value] if "role" in summary else summary


def worst_rows(summary: pd.DataFrame, norm: str) -> pd.DataFrame:
    """Per defense and finite epsilon of `norm`: its worst case over the attacks (its only
    attack's row where it faced one), with the attacks it covers."""
    rows = summary[(summary["norm"] == norm) & summary["epsilon"].map(lambda e: math.isfinite(float(e)))]
    picked = []
    for _, group in rows.groupby("defense", sort=False):
        worst = group[group["kind"] == SummaryKind.WORST_CASE]
        if worst.empty:
            worst = group.assign(covers=group["attack"])
        picked.append(worst)
    return pd.concat(picked) if picked else rows


def headline_epsilon(summary: pd.DataFrame, worst: pd.DataFrame, norm: str) -> float | None:
    """The epsilon the headline reads: the one most of the evaluated attacks ran at; among ties,
    the one whose mean worst-case accuracy is nearest 50% (where defenses differ most)."""
    evaluated = _evaluated(summary)
    attacked = evaluated[(evaluated["norm"] == norm) & (evaluated["kind"] != SummaryKind.WORST_CASE)
                         & evaluated["epsilon"].map(lambda e: math.isfinite(float(e)))]
    if attacked.empty:
        return None
    counts = attacked.groupby("epsilon")["attack"].nunique()
    tied = [float(e) for e in counts[counts == counts.max()].index]
    mean = worst.groupby("epsilon")["robust_accuracy"].mean()
    return min(tied, key=lambda e: (abs(mean.get(e, 0.0) - 0.5), e))


def setting_attack(summary: pd.DataFrame, defense: str, norm: str, eps: float, accuracy: float) -> str:
    """The attack (or attacks, when tied) whose accuracy on `defense` at `eps` is the worst case."""
    rows = summary[(summary["defense"] == defense) & (summary["norm"] == norm)
                   & (summary["kind"] != SummaryKind.WORST_CASE) & (summary["epsilon"].map(float) == eps)]
    lowest = rows[(rows["robust_accuracy"] - accuracy).abs() < 1e-9]["attack"].tolist()
    if not lowest:  # each attack alone leaves more: only their union beats every sample counted
        return "attacks combined"
    return "/".join(lowest[:2]) + ("/..." if len(lowest) > 2 else "")


def headlines(report: Report) -> list[str]:
    """One sentence per norm: every defense's accuracy under its strongest attacks at one epsilon,
    with the attack that set it."""
    summary = _evaluated(report.summary)
    rejecting = set(rejecting_defenses(report, list(dict.fromkeys(summary["defense"]))))
    lines = []
    for norm in dict.fromkeys(summary["norm"]):
        worst = worst_rows(summary, norm)
        eps = headline_epsilon(summary, worst, norm)
        if eps is None:
            continue
        at = worst[worst["epsilon"].map(float) == eps].sort_values("robust_accuracy", ascending=False)
        parts = [f"{r.defense}{' (r)' if r.defense in rejecting else ''} {100 * r.robust_accuracy:.1f}% "
                 f"({setting_attack(report.summary, r.defense, norm, eps, r.robust_accuracy)})"
                 for r in at.itertuples()]
        covers = {r.defense: set(str(r.covers).split("+")) for r in at.itertuples()}
        widest = max(covers.values(), key=len) if covers else set()
        missing = sorted({a for c in covers.values() for a in widest - c})
        lacking = [d for d, c in covers.items() if c < widest]
        line = f"{norm_label(norm)} eps {epsilon(eps)}, worst case over the attacks (set by): " + ", ".join(parts)
        if lacking:
            line += f"; {', '.join(lacking)}: without {', '.join(missing)}"
        lines.append(line)
    return lines


def reject_lines(report: Report) -> list[str]:
    """Per reject-option defense and norm, at the headline epsilon: the lowest detection AUC and
    the highest error at the threshold T over the attacks, and the attacks behind them."""
    reject, summary = report.reject, _evaluated(report.summary)
    if reject is None or reject.empty:
        return []
    lines = []
    for (defense, norm), rows in reject.groupby(["defense", "norm"], sort=False):
        worst = worst_rows(summary, norm)
        eps = headline_epsilon(summary, worst, norm)
        at = rows[rows["epsilon"].map(float) == eps] if eps is not None else rows[:0]
        auc, error = at.dropna(subset=["auc"]), at.dropna(subset=["error_with_reject"])
        parts = []
        if not auc.empty:
            low = auc.loc[auc["auc"].idxmin()]
            parts.append(f"detection AUC {low.auc:.3f} ({low.attack})")
        if not error.empty:
            high = error.loc[error["error_with_reject"].idxmax()]
            parts.append(f"error at T {100 * high.error_with_reject:.1f}% ({high.attack}); T passes "
                         f"{100 * high.clean_accept_rate:.0f}% of clean inputs")
        if parts:
            lines.append(f"{defense} (r), {norm_label(norm)} eps {epsilon(eps)}: " + ", ".join(parts))
    return lines


def worst_case_table(report: Report) -> TextTable:
    """Clean accuracy and each defense's worst case at every epsilon, all norms in one table."""
    summary = _evaluated(report.summary)
    defenses = list(dict.fromkeys(summary["defense"]))
    clean = summary.drop_duplicates("defense").set_index("defense")
    rows = [["clean", "", *[with_interval(clean.loc[d, "clean_accuracy"], clean.loc[d, "clean_accuracy_low"],
                                         clean.loc[d, "clean_accuracy_high"]) for d in defenses]]]
    flagged = report.summary[report.summary["unreliable"] != ""] if "unreliable" in report.summary else summary[:0]
    unreliable = set(zip(flagged["defense"], flagged["attack"]))
    for norm in dict.fromkeys(summary["norm"]):
        worst = worst_rows(summary, norm)
        for eps, group in worst.groupby("epsilon", sort=True):
            by_defense = group.set_index("defense")
            cells = []
            for d in defenses:
                if d not in by_defense.index:
                    cells.append("-")
                    continue
                r = by_defense.loc[d]
                text = with_interval(r["robust_accuracy"], r["robust_accuracy_low"], r["robust_accuracy_high"])
                cells.append(f"{text} ?" if (d, r["attack"]) in unreliable else text)
            rows.append([f"worst {norm_label(norm)}", epsilon(float(eps)), *cells])
    rejecting = rejecting_defenses(report, defenses)
    note = "worst = robust to every attack of the norm (ALL rows of the full report)"
    if any(cell.endswith(" ?") for row in rows for cell in row):
        note += "; ? = unreliable (see the checks)"
    if rejecting:
        note += "; " + REJECT_NOTE
    return TextTable("Accuracy in % (95% interval)", ["", "eps", *[f"{d} (r)" if d in rejecting else d
                                                                 for d in defenses]], rows, note=note, left_columns=2)


def check_lines(report: Report) -> list[str]:
    """The trust checks in a few lines: how many flags, the first few (those that make a number
    unreliable first), each with what to do."""
    flags = report.flags
    if flags.empty:
        return ["Checks: no flags (no sign that an attack failed)."]
    distinct = flags.drop_duplicates(["defense", "attack", "flag"])
    grouped = (distinct.groupby(["flag", "attack"], sort=False)
               .agg(defenses=("defense", ", ".join), advice=("advice", "first")).reset_index())
    grouped = grouped.iloc[grouped["flag"].map(lambda f: f not in UNRELIABLE).argsort(kind="stable")]
    shown = [f"  {g.flag}{' (?)' if g.flag in UNRELIABLE else ''}: {g.attack} on {g.defenses}: {g.advice}"
             for g in grouped.head(FLAGS_SHOWN).itertuples()]
    more = len(grouped) - len(shown)
    return [f"Checks: {len(flags)} flag(s); what to do:"] + shown + ([f"  and {more} more"] if more > 0 else [])


def brief_lines(report: Report) -> list[str]:
    """The headline sentences, then (after the table, written apart) the reject option, the
    checks and the pointer to everything else."""
    runs = " ".join(report.runs) if report.runs else ""
    reused = [f"{report.reused} cell(s) copied from earlier runs on the same content (--fresh reruns them)"
              ] if report.reused else []
    rejecting = reject_lines(report)
    return [*headlines(report), "", *(["Reject option: " + line for line in rejecting]), *check_lines(report),
            *reused, "", f"Every table and figure: advbench report {runs} --full, and report.html beside the "
                         "records".replace("  ", " ")]
