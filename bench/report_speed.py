"""Report cost against the number of cells: each cell's outcomes computed once (`metrics.Outcomes`)
vs recomputed wherever a view asks for them (what the report did before, kept here as the reference).

Builds one run per size with `--cells` fgsm cells at distinct epsilons on the shipped digits cnn, then
times the views that read outcomes (summary with its worst cases, robustness curves, McNemar table),
both ways, repeats interleaved; prints CPU seconds (median) and new/old, and checks the tables agree.
Run: .venv/bin/python bench/report_speed.py [--cells 10 20 40] [--samples 240] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from click.testing import CliRunner

from advbench.cli import main as cli
from advbench.comparisons import mcnemar_table
from advbench.metrics import Outcomes, outcomes_at, robustness_curves, summarize, worst_case_outcomes
from advbench.report import Run
from advbench.store import list_runs

ZOO = Path(__file__).parents[1] / "zoo"


class Recomputed(Outcomes):
    """The reference: every request computes its outcomes again (no memory)."""

    def at(self, cell: pd.DataFrame, eps: float) -> pd.DataFrame:
        return outcomes_at(cell, eps)

    def worst_case(self, cells: list[pd.DataFrame], eps: float) -> pd.DataFrame:
        return worst_case_outcomes(cells, eps, self)


def make_run(directory: Path, cells: int, samples: int) -> Run:
    grid = directory / "grid.toml"
    attacks = "".join(f'[[attacks]]\nname = "fgsm"\nlabel = "fgsm-{i}"\nepsilons = [{0.01 * (i + 1):.2f}]\n'
                      for i in range(cells))
    grid.write_text(f'samples = {samples}\nsanity = false\ndefenses = ["cnn", "fgsm-at"]\n{attacks}')
    result = CliRunner().invoke(cli, ["run", str(grid), "--results-dir", str(directory / "results"),
                                      "--zoo-dir", str(ZOO), "--format", "csv"])
    if result.exit_code != 0:
        raise SystemExit(result.output)
    return Run.open(list_runs(directory / "results"))


def views(run: Run, outcomes: Outcomes) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    summary = summarize(run.records, run.epsilons, outcomes)
    curves = robustness_curves(run.records, run.epsilons, outcomes=outcomes)
    return summary, curves, mcnemar_table(run.records, summary, outcomes=outcomes)


def cpu_seconds(fn) -> tuple[float, object]:
    start = time.process_time()
    result = fn()
    return time.process_time() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, nargs="+", default=[10, 20, 40])
    parser.add_argument("--samples", type=int, default=240)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="accepted for collect_results; the report runs on the CPU")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; 2 defenses x N fgsm cells, "
          f"{args.samples} samples; CPU seconds, median of {args.repeats}")
    print(f"{'cells':>6} {'recomputed':>11} {'once':>8} {'new/old':>8}  same tables")
    for cells in args.cells:
        with tempfile.TemporaryDirectory() as tmp:
            run = make_run(Path(tmp), cells, args.samples)
            old, new, same = [], [], True
            for _ in range(args.repeats):  # interleaved
                seconds, reference = cpu_seconds(lambda: views(run, Recomputed()))
                old.append(seconds)
                seconds, result = cpu_seconds(lambda: views(run, Outcomes()))
                new.append(seconds)
                same &= all(a.equals(b) for a, b in zip(reference, result))
            before, after = statistics.median(old), statistics.median(new)
            print(f"{2 * cells:>6} {before:>11.2f} {after:>8.2f} {after / before:>8.3f}  {same}")
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
