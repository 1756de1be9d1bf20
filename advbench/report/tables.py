"""Human-facing tables laid out like the papers: rows clean / attacks / ALL per norm, columns defenses."""

from __future__ import annotations

import math

import pandas as pd

from ..errors import AdvbenchError
from ..contract import SummaryKind
from ..norms import parse_norm
from . import Report, curve_summary
from .terminal import TextTable


def number(value: object, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def percent(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{100 * value:.1f}%"


def epsilon(value: float) -> str:
    return "unbounded" if math.isinf(value) else number(float(value))


def norm_label(norm: str) -> str:
    """Linf / L2, as the field prints them (records keep linf / l2)."""
    try:
        return parse_norm(norm).label
    except AdvbenchError:
        return str(norm)


def with_interval(value: float, low: float, high: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{100 * value:.1f} ±{100 * (high - low) / 2:.1f}"


def _markers(report: Report) -> dict[tuple[str, str, float | None], str]:
    """(defense, attack, epsilon or None for every epsilon) -> how the accuracy table marks a
    flagged number."""
    marks: dict[tuple[str, str, float | None], str] = {}
    for flag in report.flags.itertuples():
        if flag.flag == "weaker-than-autoattack":
            marks[(flag.defense, flag.attack, float(flag.epsilon))] = "weak"
    if "unreliable" in report.summary:
        for row in report.summary[report.summary["unreliable"] != ""].itertuples():
            marks[(row.defense, row.attack, None)] = "unreliable"
    return marks


def _mark(marks: dict[tuple[str, str, float | None], str], defense: str, attack: str, eps: float) -> str | None:
    return marks.get((defense, attack, None)) or marks.get((defense, attack, float(eps)))


def _marked(text: str, mark: str | None) -> str:
    if mark == "unreliable":
        return f"unreliable ({text.split(' ')[0]})"
    return f"{text} weak" if mark == "weak" else text


def rejecting_defenses(report: Report, defenses: list[str]) -> list[str]:
    """The defenses among `defenses` with a reject option (their records carry reject scores)."""
    return [d for d in defenses if report.records.loc[report.records["defense"] == d, "clean_score"].notna().any()]


REJECT_NOTE = ("(r) = reject option: here an input counts by its predicted class whether or not it is rejected; "
               "the Reject option table counts rejections")


def accuracy_table(report: Report) -> TextTable:
    summary = report.summary
    marks = _markers(report)
    defenses = list(dict.fromkeys(summary["defense"]))
    rows: list[list[str]] = []
    sections: list[int] = []
    clean = summary.drop_duplicates("defense").set_index("defense")
    rows.append(["clean", "", *[with_interval(clean.loc[d, "clean_accuracy"], clean.loc[d, "clean_accuracy_low"],
                                              clean.loc[d, "clean_accuracy_high"]) for d in defenses]])
    finite = summary[~summary["epsilon"].apply(lambda e: math.isinf(float(e)))]
    for norm in dict.fromkeys(finite["norm"]):
        sections.append(len(rows))
        block = finite[finite["norm"] == norm]
        ordered = pd.concat([block[block["kind"] != SummaryKind.WORST_CASE], block[block["kind"] == SummaryKind.WORST_CASE]])
        for (attack, eps), group in ordered.groupby(["attack", "epsilon"], sort=False):
            by_defense = group.set_index("defense")
            cells = [_marked(with_interval(by_defense.loc[d, "robust_accuracy"], by_defense.loc[d, "robust_accuracy_low"],
                                           by_defense.loc[d, "robust_accuracy_high"]), _mark(marks, d, attack, eps))
                     if d in by_defense.index else "-" for d in defenses]
            rows.append([f"{attack} ({norm_label(norm)})" if not attack.startswith("ALL") else attack, epsilon(eps),
                         *cells])
    rejecting = rejecting_defenses(report, defenses)
    header = [f"{d} (r)" if d in rejecting else d for d in defenses]
    reject_note = "; " + REJECT_NOTE if rejecting else ""
    return TextTable("Accuracy in % (95% Wilson interval), rows by attack and epsilon", ["", "eps", *header], rows,
                     note="minimum-norm attacks are read off their per-sample norms; ALL = robust to every attack "
                          "of that norm with examples valid at that eps (fixed-epsilon ones at that eps or below)"
                          + _coverage_note(summary)
                          + ("; unreliable = a gradient attack beaten by a score-based or transfer attack, dead "
                             "gradients, or a defense random without declaring it; weak = more than 1 point above "
                             "autoattack (see the checks)" if marks else "")
                          + reject_note,
                     left_columns=2, sections=sections)


def _coverage_note(summary: pd.DataFrame) -> str:
    """Where a worst case does not cover all of its norm's attacks: which it leaves out, by epsilon."""
    worst = summary[summary["kind"] == SummaryKind.WORST_CASE]
    missing: dict[tuple[str, float, str], list[str]] = {}
    for row in worst.itertuples():
        attacks = summary[(summary["defense"] == row.defense) & (summary["norm"] == row.norm)
                          & (summary["kind"] != SummaryKind.WORST_CASE)]["attack"]
        left_out = [a for a in dict.fromkeys(attacks) if a not in str(row.covers).split("+")]
        if left_out:
            missing.setdefault((row.attack, float(row.epsilon), ", ".join(left_out)), []).append(row.defense)
    notes = [f"{label} at {eps:g} leaves out {attacks} (not run at or below it) for {', '.join(defenses)}"
             for (label, eps, attacks), defenses in missing.items()]
    return ("; " + "; ".join(notes)) if notes else ""


def ensemble_table(report: Report) -> TextTable | None:
    """The AutoAttack log: accuracy after each component, then the runner's verified number."""
    if report.ensembles.empty:
        return None
    frame = report.ensembles
    stages = list(dict.fromkeys(frame["stage"]))
    rows = []
    for (defense, attack, eps), group in frame.groupby(["defense", "attack", "epsilon"], sort=False):
        by_stage = group.set_index("stage")["accuracy"]
        rows.append([defense, attack, epsilon(eps), percent(group["clean_accuracy"].iloc[0]),
                     *[percent(by_stage[s]) if s in by_stage else "-" for s in stages]])
    return TextTable("Ensemble components: robust accuracy after each (AutoAttack's log)",
                     ["defense", "attack", "eps", "clean", *[f"after {s}" for s in stages[:-1]], "verified"], rows,
                     note="each component attacks only the samples every earlier one left standing; verified = "
                          "the runner's own re-prediction of the final examples", left_columns=3)


def attack_table(report: Report) -> TextTable:
    rows = []
    summary = report.summary[report.summary["kind"] != SummaryKind.WORST_CASE]
    for row in summary.itertuples():  # every epsilon (and unbounded for minimum-norm attacks)
        rows.append([row.defense, row.attack, row.kind, epsilon(row.epsilon), percent(row.success_rate),
                     number(row.mean_l2), number(row.median_l2), number(row.rho),
                     number(row.seconds_per_sample, 3), number(row.queries_per_sample, 4)])
    return TextTable("Attacks: success and distortion of successful examples",
                     ["defense", "attack", "kind", "eps", "success", "mean L2", "median L2", "rho", "s/sample",
                      "queries/sample"], rows, note="rho = mean ||eta||2 / ||x||2", left_columns=3)


def runtime_table(report: Report) -> TextTable | None:
    """Paper 002 Table 2: wall seconds per sample of each attack on each model (queries in brackets)."""
    summary = report.summary[report.summary["kind"] != SummaryKind.WORST_CASE]
    defenses = list(dict.fromkeys(summary["defense"]))
    if len(defenses) < 2:
        return None  # the attack table already shows it
    cells = summary.drop_duplicates(["defense", "attack"]).set_index(["attack", "defense"])
    rows = [[attack, *[f"{number(cells.loc[(attack, d), 'seconds_per_sample'], 3)} "
                       f"({number(cells.loc[(attack, d), 'queries_per_sample'], 4)})"
                       if (attack, d) in cells.index else "-" for d in defenses]]
            for attack in dict.fromkeys(summary["attack"])]
    return TextTable("Attack runtime: seconds per sample (model evaluations per sample)", ["attack", *defenses], rows,
                     note="wall time of the whole attack per input, all epsilons of a fixed-epsilon attack included",
                     left_columns=1)


def curve_table(report: Report) -> TextTable:
    largest = report.curves.groupby(["defense", "attack"], sort=False)["epsilon"].max()
    rows = [[r.defense, r.attack, norm_label(r.norm),
             epsilon(r.epsilon) if math.isfinite(r.epsilon) else f"> {epsilon(largest[(r.defense, r.attack)])}"]
            for r in curve_summary(report).itertuples()]
    return TextTable("Robustness curves: smallest epsilon where accuracy falls below 50%",
                     ["defense", "attack", "norm", "eps at 50%"], rows,
                     note="fixed-epsilon attacks are only measured at their epsilons", left_columns=3)


def mcnemar_matrix(report: Report) -> TextTable | None:
    table = report.mcnemar
    if table.empty:
        return None
    pairs = list(dict.fromkeys(zip(table["defense_a"], table["defense_b"])))
    tested = table[table["pvalue"].notna()]
    corrected = report.holm and bool(tested.duplicated(["attack", "norm", "epsilon"]).any())
    rows = []
    for (attack, eps), group in table.groupby(["attack", "epsilon"], sort=False):
        by_pair = {(r.defense_a, r.defense_b): r for r in group.itertuples()}
        cells = []
        for pair in pairs:
            r = by_pair.get(pair)
            if r is None:
                cells.append("-")
            elif math.isnan(r.pvalue):
                cells.append("refused")
            else:
                p = r.pvalue_holm if corrected else r.pvalue
                cells.append(f"{100 * r.difference:+.1f} [{100 * r.difference_low:+.1f}, {100 * r.difference_high:+.1f}]"
                             f" p={p:.2g}{' *' if r.significant else ''}")
        rows.append([attack, "" if attack == "clean" else epsilon(eps), *cells])
    refused = table[table["pvalue"].isna()]
    subsets = table[table["pvalue"].notna() & (table["note"] != "")]
    title = ("Paired comparison: accuracy a - b in points [95% CI], McNemar p"
             + (f" (Holm-Bonferroni within each row of {len(pairs)} pairs)" if corrected else ""))
    note = (f"* = significant at alpha {report.alpha:g}"
            + (" after Holm-Bonferroni correction (--no-holm: per-test p-values)" if corrected else "")
            + "; exact binomial McNemar below 25 discordant pairs; Newcombe's interval for paired proportions")
    if not subsets.empty:
        note += "; a defense evaluated on fewer samples is compared on those it shares"
    if not refused.empty:
        note += f"; refused: {refused['note'].iloc[0].removeprefix('refused: ')}"
    return TextTable(title, ["", "eps", *[f"{a} vs {b}" for a, b in pairs]], rows, note=note, left_columns=2)


def reject_table(report: Report) -> TextTable | None:
    if report.reject.empty:
        return None
    rows = [[r.defense, r.attack, epsilon(r.epsilon), number(r.auc), percent(r.detection_rate),
             number(r.threshold), percent(r.clean_accept_rate), percent(r.adversarial_accept_error),
             percent(r.accuracy_with_reject)] for r in report.reject.itertuples()]
    return TextTable(
        "Reject option", ["defense", "attack", "eps", "AUC", f"detected @{100 * report.false_alarm:g}% FPR", "T",
                          "TPR clean", "FPR adv", "acc w/ reject"], rows,
        note="AUC and detection: clean vs successful adversarial inputs; at the defense's threshold T: TPR = clean "
             "inputs accepted, FPR = perturbed inputs accepted and misclassified (paper 001 Eq. 7-8, 14-15)",
        left_columns=3)


def defense_table(report: Report) -> TextTable | None:
    """Benign accuracy (full test split) and training cost from the zoo cards."""
    known = report.defenses.dropna(subset=["benign_accuracy"]) if not report.defenses.empty else report.defenses
    if known.empty:
        return None
    rows = [[r.defense, str(r.model), percent(r.benign_accuracy), number(r.seconds_per_epoch, 3),
             number(r.train_seconds, 3), f"{norm_label(r.norm)} {number(r.eps)}" if isinstance(r.norm, str) else "-"]
            for r in known.itertuples()]
    return TextTable("Defenses (from their zoo cards)", ["defense", "zoo entry", "benign acc", "s/epoch", "train s",
                                                         "trained at"], rows, left_columns=2)


def certified_table(report: Report) -> TextTable | None:
    """Provable L2 lower bounds (paper 004 Eq. 7) for defenses that compute them."""
    if report.certified.empty:
        return None
    rows = [[r.defense, "-" if math.isnan(r.epsilon) else epsilon(r.epsilon), str(r.samples),
             number(r.mean_radius), "-" if math.isnan(r.certified) else percent(r.certified)]
            for r in report.certified.itertuples()]
    return TextTable("Certified L2 lower bounds (paper 004 Eq. 7)", ["defense", "L2 eps", "n", "mean radius",
                                                                      "certified"], rows,
                     note="radius 0 for misclassified samples; exact as far as the latent search finds the minima",
                     left_columns=2)


def flag_table(report: Report) -> TextTable:
    """Attack-failure checks: what may make this evaluation over-report robustness."""
    if report.flags.empty:
        return TextTable("Attack-failure checks", ["result"], [["no flags"]],
                         note="none of the checks fired (see README: Trusting an evaluation)")
    rows = [[r.defense, r.attack, r.flag, r.detail, r.advice] for r in report.flags.itertuples()]
    return TextTable("Attack-failure checks (flags: look before trusting these cells)",
                     ["defense", "attack", "flag", "detail", "try"], rows, left_columns=3)


def seed_table(report: Report) -> TextTable | None:
    """Mean +- sd of accuracy across independently trained copies (cnn@0..4)."""
    if report.seeds.empty:
        return None
    rows = [[r.group, r.attack if r.attack == "clean" else f"{r.attack} ({norm_label(r.norm)})",
             "" if math.isnan(r.epsilon) else epsilon(r.epsilon), str(r.seeds),
             f"{100 * r.mean:.1f} ±{100 * r.sd:.1f}"] for r in report.seeds.itertuples()]
    return TextTable("Seed variance: accuracy in % across independently trained copies (mean ± sd)",
                     ["defense", "", "eps", "seeds", "mean ± sd"], rows,
                     note="sd over training seeds; each copy's own 95% interval (sampling of test points) is in the "
                          "accuracy table", left_columns=2)


def timing_table(report: Report, shown: int = 8) -> TextTable | None:
    """Where the run's wall time went: training, clean predictions, the slowest cells."""
    if report.timings.empty:
        return None
    frame = report.timings
    is_cell = ~frame["phase"].str.startswith(("training", "clean ")) & ~frame["phase"].str.contains("/(?:training|clean )")
    phases = frame[~is_cell]
    cells = frame[is_cell]
    rows = [[r.phase, f"{r.seconds:.1f}"] for r in phases.itertuples()]
    rows += [[f"cell {r.phase}", f"{r.seconds:.1f}"] for r in cells.head(shown).itertuples()]
    if len(cells) > shown:
        rows.append([f"{len(cells) - shown} other cells", f"{cells['seconds'].iloc[shown:].sum():.1f}"])
    rows.append(["total", f"{frame['seconds'].sum():.1f}"])
    note = f"{report.reused} cell(s) reused from earlier runs took no time here" if report.reused else ""
    return TextTable("Phase times (wall seconds)", ["phase", "seconds"], rows, note=note, left_columns=1)


def paper_tables(report: Report) -> list[TextTable]:
    tables = [defense_table(report), accuracy_table(report), seed_table(report), ensemble_table(report),
              attack_table(report),
              runtime_table(report),
              curve_table(report), mcnemar_matrix(report),
              reject_table(report), certified_table(report), flag_table(report), timing_table(report)]
    return [t for t in tables if t is not None]


SUMMARY_DISPLAY = {
    "defense": "defense", "attack": "attack", "norm": "norm", "epsilon": "eps", "samples": "n",
    "clean_accuracy": "clean acc", "robust_accuracy": "robust acc", "success_rate": "success",
    "mean_l2": "mean L2", "median_l2": "median L2", "rho": "rho", "seconds_per_sample": "s/sample",
}


def summary_tables(report: Report) -> list[TextTable]:
    rows = []
    for _, r in report.summary.iterrows():
        rows.append([r["defense"], r["attack"], norm_label(r["norm"]), epsilon(float(r["epsilon"])), str(r["samples"]),
                     with_interval(r["clean_accuracy"], r["clean_accuracy_low"], r["clean_accuracy_high"]),
                     with_interval(r["robust_accuracy"], r["robust_accuracy_low"], r["robust_accuracy_high"]),
                     percent(r["success_rate"]), number(r["mean_l2"]), number(r["median_l2"]), number(r["rho"]),
                     number(r["seconds_per_sample"], 3)])
    return [TextTable("Summary (accuracies in % with 95% Wilson interval)", list(SUMMARY_DISPLAY.values()), rows,
                      left_columns=3)]
