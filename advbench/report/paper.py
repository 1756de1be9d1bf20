"""Outputs for papers and leaderboards: a booktabs LaTeX table and RobustBench-style JSON entries.

Both read the report's summary (itself a pure function of the records), so they say
exactly what the terminal table says.
"""

from __future__ import annotations

import json
import math

import pandas as pd

from .. import __version__
from ..contract import CellRole, SummaryKind
from . import Report
from .tables import REJECT_NOTE, epsilon, norm_label, rejecting_defenses

_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


UNRELIABLE_MARK = r"$^\dagger$"


def _cell(value: float, low: float, high: float, best: bool, unreliable: bool = False) -> str:
    if value is None or math.isnan(value):
        return "--"
    text = f"{100 * value:.1f} $\\pm$ {100 * (high - low) / 2:.1f}"
    if unreliable:
        return text + UNRELIABLE_MARK
    return f"\\textbf{{{text}}}" if best else text


def _row(label: str, values: dict[str, tuple[float, float, float]], defenses: list[str],
         unreliable: frozenset[str] = frozenset()) -> str:
    """One table row; the best number is bold only when it is the only best (a tie, e.g. 0.0 in
    every column, has none); an unreliable number carries a dagger and is never the bold best."""
    finite = [v[0] for d, v in values.items() if not math.isnan(v[0]) and d not in unreliable]
    top = max(finite) if finite else math.nan
    unique = sum(math.isclose(v, top) for v in finite) == 1
    cells = [_cell(*values[d], best=len(defenses) > 1 and unique and math.isclose(values[d][0], top),
                   unreliable=d in unreliable) if d in values else "--"
             for d in defenses]
    return " & ".join([label, *cells]) + r" \\"


def latex_table(report: Report) -> str:
    """A booktabs table: rows clean, each attack and epsilon, then ALL per norm; columns
    defenses; accuracy in % with the half-width of its 95% Wilson interval; the only best per row
    bold. The sanity attacks (which check the others) are left out: they are not results."""
    summary = report.summary[~report.summary["epsilon"].map(lambda e: math.isinf(float(e)))]
    summary = summary[summary.get("role", pd.Series(CellRole.EVALUATED.value, index=summary.index))
                      != CellRole.SANITY]
    defenses = list(dict.fromkeys(report.summary["defense"]))
    rejecting = rejecting_defenses(report, defenses)
    clean = report.summary.drop_duplicates("defense").set_index("defense")
    lines = [r"\begin{tabular}{l" + "c" * len(defenses) + "}", r"\toprule",
             " & ".join(["", *[latex_escape(d) + (" (r)" if d in rejecting else "") for d in defenses]]) + r" \\",
             r"\midrule",
             _row("clean", {d: (clean.loc[d, "clean_accuracy"], clean.loc[d, "clean_accuracy_low"],
                                clean.loc[d, "clean_accuracy_high"]) for d in defenses}, defenses)]
    for norm in dict.fromkeys(summary["norm"]):
        lines.append(r"\midrule")
        block = summary[summary["norm"] == norm]
        ordered = pd.concat([block[block["kind"] != SummaryKind.WORST_CASE], block[block["kind"] == SummaryKind.WORST_CASE]])
        for (attack, eps), group in ordered.groupby(["attack", "epsilon"], sort=False):
            name = attack if str(attack).startswith("ALL") else f"{attack} ({norm_label(norm)})"
            values = {r.defense: (r.robust_accuracy, r.robust_accuracy_low, r.robust_accuracy_high)
                      for r in group.itertuples()}
            flagged = frozenset(group.loc[group.get("unreliable", pd.Series("", index=group.index)) != "", "defense"])
            lines.append(_row(f"{latex_escape(name)}, $\\epsilon={epsilon(float(eps))}$", values, defenses, flagged))
    lines += [r"\bottomrule", r"\end{tabular}"]
    samples = int(report.summary["samples"].max())
    incomplete = "".join(f"\\textbf{{{latex_escape(notice)}.}} " for notice in report.notices)
    caption = (incomplete + f"Accuracy (\\%) with the half-width of its 95\\% Wilson interval on {samples} test "
               "samples; "
               "ALL: robust to every attack of that norm; the only best per row in bold"
               + (f"; {latex_escape(REJECT_NOTE)}" if rejecting else "")
               + (f"; {UNRELIABLE_MARK}: unreliable (an attack-failure check fired: a gradient attack beaten by a "
                  "black-box one, dead gradients, or a defense random without declaring it)"
                  if (summary.get("unreliable", pd.Series(dtype=str)) != "").any() else "")
               + ". advbench "
               f"{latex_escape(__version__)}, run {latex_escape(', '.join(report.runs))}.")
    return "\n".join([r"\begin{table}[t]", r"\centering", r"\small", *lines, f"\\caption{{{caption}}}",
                      r"\end{table}"]) + "\n"


def robustbench_entries(report: Report, dataset: str) -> list[dict[str, object]]:
    """One RobustBench-style entry per defense and AutoAttack threat model (norm, epsilon):
    clean and AutoAttack accuracy in % as RobustBench writes them, with where they came from."""
    summary = report.summary
    auto = summary[summary["attack"].astype(str).str.startswith("autoattack")]
    entries = []
    for row in auto.itertuples():
        entries.append({
            "name": row.defense, "dataset": dataset, "threat_model": norm_label(row.norm),
            "eps": _eps_text(float(row.epsilon), row.norm), "clean_acc": f"{100 * row.clean_accuracy:.2f}",
            "autoattack_acc": f"{100 * row.robust_accuracy:.2f}", "attack": row.attack, "samples": int(row.samples),
            "unreliable": getattr(row, "unreliable", "") or None,  # the flags that void the number, if any
            "advbench_version": __version__, "run_id": ", ".join(report.runs),
        })
    return entries


def robustbench_json(report: Report, dataset: str) -> str:
    entries = robustbench_entries(report, dataset)
    missing = sorted(set(report.summary["defense"]) - {e["name"] for e in entries})
    document: dict[str, object] = {"entries": entries}
    if report.notices:
        document["notices"] = report.notices  # e.g. "INCOMPLETE run ...: 5 of 48 cells"
    if missing:
        document["without_autoattack"] = missing  # no autoattack cell: no leaderboard number
    return json.dumps(document, indent=2) + "\n"


def _eps_text(eps: float, norm: str) -> str:
    """Small Linf epsilons in 255ths as RobustBench writes them (8/255), others as numbers."""
    numerator = eps * 255
    if norm_label(norm) == "Linf" and abs(numerator - round(numerator)) < 1e-6 and 0 < round(numerator) <= 16:
        return f"{round(numerator)}/255"
    return f"{eps:g}"
