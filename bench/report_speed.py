"""Report cost against the number of cells (target: a 200-cell grid's report in under 10 s of CPU,
linear in cells).

Builds one run per size, 2 defenses (the shipped digits cnn and fgsm-at) x N/2 fgsm cells at
distinct epsilons, then times `build_report` (every view: summary with its worst cases, curves,
McNemar, reject metrics, flags) in this process, repeats interleaved across sizes; prints CPU
seconds (median) and seconds per cell: linear cost keeps that column flat.
Run: .venv/bin/python bench/report_speed.py [--cells 50 100 200] [--samples 240] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from click.testing import CliRunner

from advbench.cli import main as cli
from advbench.report import build_report
from advbench.store import RunStore, list_runs

ZOO = Path(__file__).parents[1] / "zoo"


def make_run(directory: Path, cells: int, samples: int) -> list[RunStore]:
    directory.mkdir(parents=True, exist_ok=True)
    grid = directory / "grid.toml"
    per_defense = cells // 2
    attacks = "".join(f'[[attacks]]\nname = "fgsm"\nlabel = "fgsm-{i}"\nepsilons = [{0.002 * (i + 1):.3f}]\n'
                      for i in range(per_defense))
    grid.write_text(f'samples = {samples}\nsanity = false\ndefenses = ["cnn", "fgsm-at"]\n{attacks}')
    result = CliRunner().invoke(cli, ["run", str(grid), "--results-dir", str(directory / "results"),
                                      "--zoo-dir", str(ZOO), "--format", "csv"])
    if result.exit_code != 0:
        raise SystemExit(result.output)
    return list_runs(directory / "results")


def cpu_seconds(stores: list[RunStore]) -> float:
    start = time.process_time()
    build_report(stores)
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, nargs="+", default=[50, 100, 200])
    parser.add_argument("--samples", type=int, default=240)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="accepted for collect_results; the report runs on the CPU")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; 2 defenses x N/2 fgsm cells, "
          f"{args.samples} samples; build_report CPU seconds, median of {args.repeats}")
    with tempfile.TemporaryDirectory() as tmp:
        runs = {cells: make_run(Path(tmp) / str(cells), cells, args.samples) for cells in args.cells}
        build_report(runs[args.cells[0]])  # warm-up: imports
        seconds: dict[int, list[float]] = {cells: [] for cells in args.cells}
        for _ in range(args.repeats):  # interleaved
            for cells, stores in runs.items():
                seconds[cells].append(cpu_seconds(stores))
    print(f"{'cells':>6} {'seconds':>8} {'s/cell':>8}")
    for cells, values in seconds.items():
        median = statistics.median(values)
        print(f"{cells:>6} {median:>8.2f} {median / cells:>8.4f}")
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
