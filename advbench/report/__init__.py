"""Reports: everything a run's records support, in the shape of the papers' tables.

`build_report` computes all views from per-sample records (via metrics, comparisons
and stats); renderers only format them. Output formats are picked from an enum.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import pandas as pd

from ..comparisons import mcnemar_table
from ..contract import CellRole, DefenseInfo
from ..errors import AdvbenchError
from ..metrics import certified_summary, ensemble_breakdown, epsilon_at_accuracy, robustness_curves, seed_spread, summarize
from ..read_model import Run
from ..reject_metrics import reject_summary, reject_tradeoff
from ..specs import seed_group
from ..settings import DEFAULT_ALPHA, DEFAULT_FALSE_ALARM, Format, View
from ..trust import attack_failure_flags, unreliable_reasons
from ..store import RunStore, atomic_write_text


@dataclass
class Report:
    run: Run = field(repr=False)  # the read model every view below was computed from
    summary: pd.DataFrame
    curves: pd.DataFrame
    mcnemar: pd.DataFrame
    reject: pd.DataFrame
    tradeoff: pd.DataFrame
    records: pd.DataFrame = field(repr=False)
    defenses: pd.DataFrame = field(default_factory=pd.DataFrame)
    alpha: float = DEFAULT_ALPHA
    false_alarm: float = DEFAULT_FALSE_ALARM
    runs: list[str] = field(default_factory=list)
    certified: pd.DataFrame = field(default_factory=pd.DataFrame)
    flags: pd.DataFrame = field(default_factory=pd.DataFrame)
    ensembles: pd.DataFrame = field(default_factory=pd.DataFrame)  # per-component breakdown of autoattack cells
    notices: list[str] = field(default_factory=list)  # e.g. "INCOMPLETE run ...: 3 of 5 cells"
    dataset: str = ""
    holm: bool = True  # McNemar significance after Holm-Bonferroni correction within each row
    seeds: pd.DataFrame = field(default_factory=pd.DataFrame)  # spread across independently trained copies
    timings: pd.DataFrame = field(default_factory=pd.DataFrame)  # phase, seconds (from the manifests)
    reused: int = 0  # cells copied from earlier runs

    def tables(self) -> dict[str, pd.DataFrame]:
        """Machine-readable tables by file stem (CSV files, JSON keys)."""
        tables = {"summary": self.summary, "curves": self.curves, "mcnemar": self.mcnemar, "reject": self.reject,
                  "reject_tradeoff": self.tradeoff, "defenses": self.defenses,
                  "certified": self.certified, "flags": self.flags, "ensembles": self.ensembles,
                  "seeds": self.seeds, "timings": self.timings}
        return {k: v for k, v in tables.items() if not v.empty or k == "summary"}


DEFENSE_COLUMNS = ["defense", "model", "benign_accuracy", "seconds_per_epoch", "train_seconds", "norm", "eps"]


def _defense_row(name: str, info: DefenseInfo) -> dict[str, object]:
    """What the zoo card says about a defense: the paper 003 Table 2 benign accuracy and sec/epoch."""
    card = info.card or {}
    return {"defense": name, "model": card.get("name", info.spec), "benign_accuracy": card.get("clean_accuracy"),
            "seconds_per_epoch": card.get("seconds_per_epoch"), "train_seconds": card.get("train_seconds"),
            "norm": card.get("norm"), "eps": card.get("eps")}


def build_report(stores: list[RunStore], *, alpha: float = DEFAULT_ALPHA, false_alarm: float = DEFAULT_FALSE_ALARM,
                 holm: bool = True) -> Report:
    if not 0 < alpha < 1:
        raise AdvbenchError(f"alpha must be between 0 and 1, got {alpha}")
    if not 0 < false_alarm < 1:
        raise AdvbenchError(f"false-alarm rate must be between 0 and 1, got {false_alarm}")
    return report_of(Run.open(stores), alpha=alpha, false_alarm=false_alarm, holm=holm,
                     runs=[s.run_id for s in stores])


def report_of(run: Run, *, alpha: float = DEFAULT_ALPHA, false_alarm: float = DEFAULT_FALSE_ALARM,
              holm: bool = True, runs: list[str] | None = None) -> Report:
    """Every view of a read model; each is a pure function of the run's outcomes, read once."""
    summary = summarize(run)
    roles = {(cell.defense, cell.attack): cell.role.value for cell in run.cells.values()}
    summary = summary.assign(role=[roles.get(pair, CellRole.EVALUATED.value)
                                   for pair in zip(summary["defense"], summary["attack"])])
    flags = attack_failure_flags(run)
    flag_names: dict[tuple[str, str], list[str]] = {}
    for defense, attack, flag in zip(flags["defense"], flags["attack"], flags["flag"]):
        names = flag_names.setdefault((defense, attack), [])
        if flag not in names:
            names.append(flag)
    summary = summary.assign(flags=[";".join(flag_names.get(pair, [])) for pair in zip(summary["defense"], summary["attack"])])
    ensembles = ensemble_breakdown(run)
    summary = summary.assign(unreliable=unreliable_reasons(
        summary, flags, set(zip(ensembles.get("defense", []), ensembles.get("attack", [])))))
    records = run.records
    return Report(
        run=run, summary=summary, curves=robustness_curves(run),
        mcnemar=mcnemar_table(run, summary[summary["role"] != CellRole.SANITY], alpha, holm),
        reject=reject_summary(run, false_alarm),
        tradeoff=reject_tradeoff(run) if records["clean_score"].notna().any() else pd.DataFrame(),
        records=records, alpha=alpha, false_alarm=false_alarm, runs=list(runs or []),
        defenses=pd.DataFrame([_defense_row(n, i) for n, i in run.defenses.items()], columns=DEFENSE_COLUMNS),
        certified=certified_summary(records), flags=flags, ensembles=ensembles,
        notices=run.notices, dataset=run.dataset, holm=holm,
        seeds=seed_spread(summary, {name: seed_group(info.spec) for name, info in run.defenses.items()}),
        timings=pd.DataFrame(sorted(run.timings.items(), key=lambda item: -item[1]), columns=["phase", "seconds"]),
        reused=run.reused,
    )


def _json_value(value: object) -> object:
    """Strict JSON: NaN (no value) becomes null and infinity the string "inf"."""
    if hasattr(value, "item"):
        value = value.item()  # numpy scalar
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def _json_rows(frame: pd.DataFrame) -> list[dict[str, object]]:
    return [{k: _json_value(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]


def render(report: Report, fmt: Format | str, out: TextIO, view: View | str = View.PAPER) -> None:
    fmt = Format(fmt)
    if fmt is Format.LATEX:
        from .paper import latex_table

        out.write(latex_table(report))
    elif fmt is Format.HTML:
        from .html import html_report

        out.write(html_report(report))
    elif fmt is Format.ROBUSTBENCH:
        from .paper import robustbench_json

        out.write(robustbench_json(report, report.dataset))
    elif fmt is Format.CSV:
        for notice in report.notices:  # a half-finished grid must not paste as a complete one
            out.write(f"# {notice}\n")  # (pandas reads past them with comment="#")
        report.summary.to_csv(out, index=False)
    elif fmt is Format.JSON:
        json.dump({"notices": report.notices, **{name: _json_rows(frame) for name, frame in report.tables().items()}},
                  out, indent=2)
        out.write("\n")
    else:
        from .tables import paper_tables, summary_tables
        from .terminal import write_tables

        for notice in report.notices:
            out.write(f"{'> **' if fmt is Format.MARKDOWN else '!! '}{notice}{'**' if fmt is Format.MARKDOWN else ''}\n\n")
        if View(view) is View.BRIEF:
            _write_brief(report, out, markdown=fmt is Format.MARKDOWN)
            return
        tables = paper_tables(report) if View(view) is View.PAPER else summary_tables(report)
        write_tables(tables, out, markdown=fmt is Format.MARKDOWN)


def _write_brief(report: Report, out: TextIO, *, markdown: bool) -> None:
    import textwrap

    from .brief import brief_lines, worst_case_table
    from .terminal import NOTE_WIDTH, write_tables

    headline, _, rest = "\n".join(brief_lines(report)).partition("\n\n")
    for line in headline.splitlines():
        out.write(textwrap.fill(line, NOTE_WIDTH, subsequent_indent="    ") + "\n")
    out.write("\n")
    write_tables([worst_case_table(report)], out, markdown=markdown)
    out.write("\n" + "\n".join(textwrap.fill(line, NOTE_WIDTH, subsequent_indent="    ") if line else line
                                for line in rest.splitlines()) + "\n")


def write_artifacts(report: Report, directory: Path, *, plots: bool = True, per_attack_plots: bool = False,
                    ) -> list[Path]:
    """CSV files of every table and, with `plots`, the PNG figures (with `per_attack_plots`, also
    the threshold sweeps in one panel per attack and epsilon); returns the paths written."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AdvbenchError(f"cannot create {directory}: {exc.strerror}") from None
    written = []
    for name, frame in report.tables().items():
        path = directory / f"{name}.csv"
        atomic_write_text(path, frame.to_csv(index=False))
        written.append(path)
    if plots:
        from .html import html_report
        from .plots import write_plots

        figures = write_plots(report, directory, per_attack=per_attack_plots)
        written += figures
        page = directory / "report.html"  # every table and figure in one file that reads offline
        atomic_write_text(page, html_report(report, [f for f in figures if f.suffix == ".png"]))
        written.append(page)
    return written


def curve_summary(report: Report, level: float = 0.5) -> pd.DataFrame:
    return epsilon_at_accuracy(report.curves, level)
