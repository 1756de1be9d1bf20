"""Model evaluations and wall time of two runs of the same grid, cell by cell (issue 22 target:
at most half the evaluations of attacking every sample at every epsilon to the last step).

Evaluations of a cell are the records' `queries` (per input, every model evaluation the attack
made, EOT and surrogates included) summed over its samples; seconds are the manifest's cell
timings. Robust accuracy is printed for both runs at the largest epsilon of each cell, so a
saving that cost accuracy would show.
Run: .venv/bin/python bench/evaluations.py OLD_RUN_DIR NEW_RUN_DIR
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from advbench.contract import Timings
from advbench.read_model import Run
from advbench.store import RunStore


def per_cell(run_dir: Path) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    store = RunStore(run_dir)
    run = Run.open([store])
    timings = store.manifest().timings
    cells = timings.cells if isinstance(timings, Timings) else {}
    evaluations = {cell.id: float(cell.by_sample["queries"].sum()) for cell in run.cells.values()}
    accuracy = {cell.id: run.robust_accuracy(cell, max(cell.epsilons)) for cell in run.cells.values()}
    return evaluations, accuracy, {cell_id: cells.get(cell_id, float("nan")) for cell_id in run.cells}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    args = parser.parse_args()
    old_eval, old_acc, old_s = per_cell(args.old)
    new_eval, new_acc, new_s = per_cell(args.new)
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; old {args.old.name}, new {args.new.name}")
    print(f"{'cell':<34} {'old evals':>11} {'new evals':>11} {'new/old':>8} {'old s':>7} {'new s':>7}"
          f" {'acc old':>8} {'acc new':>8}")
    shared = [c for c in old_eval if c in new_eval]
    for cell in shared:
        ratio = new_eval[cell] / old_eval[cell] if old_eval[cell] else float("nan")
        print(f"{cell:<34} {old_eval[cell]:>11.0f} {new_eval[cell]:>11.0f} {ratio:>8.2f} {old_s[cell]:>7.1f} "
              f"{new_s[cell]:>7.1f} {old_acc[cell]:>8.1%} {new_acc[cell]:>8.1%}")
    total_old, total_new = sum(old_eval[c] for c in shared), sum(new_eval[c] for c in shared)
    seconds_old, seconds_new = sum(old_s[c] for c in shared), sum(new_s[c] for c in shared)
    print(f"{'all ' + str(len(shared)) + ' cells':<34} {total_old:>11.0f} {total_new:>11.0f} {total_new / total_old:>8.2f}"
          f" {seconds_old:>7.1f} {seconds_new:>7.1f}")


if __name__ == "__main__":
    main()
