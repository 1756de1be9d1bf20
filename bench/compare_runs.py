"""Compare two runs' records cell by cell: identical (every column but wall seconds), or how they
differ, with each epsilon's robust accuracy before and after.

Use it when a change must keep every number (a refactor: all cells identical) or may change a
random stream (a consolidated attack engine: robust accuracy never higher, each difference
stated). Exit code 1 when a shared cell's robust accuracy rose anywhere, or with `--identical`
when any shared cell differs.

Run: .venv/bin/python bench/compare_runs.py OLD_RUN_DIR NEW_RUN_DIR [--identical]
(a run directory is results/<run id>; make the old one with a worktree of the old commit).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from advbench.read_model import CellRecords, outcomes_at
from advbench.store import RunStore

IGNORED = {"seconds"}  # wall time differs between any two runs


def robust_accuracy(cell: pd.DataFrame) -> dict[float, float]:
    """Robust accuracy at each epsilon of the cell (a minimum-norm cell: at each epsilon it recorded none, so inf)."""
    epsilons = sorted(e for e in cell["epsilon"].dropna().unique()) or [float("inf")]
    return {float(eps): float(outcomes_at(CellRecords.of(cell), eps)["robust"].mean()) for eps in epsilons}


def compare_cell(old: pd.DataFrame, new: pd.DataFrame) -> tuple[str, bool]:
    """One line about the cell, and whether its robust accuracy rose anywhere (an upper bound got worse)."""
    columns = [c for c in old.columns if c not in IGNORED and c in new.columns]
    key = ["sample", "epsilon"]
    old, new = old.sort_values(key).reset_index(drop=True), new.sort_values(key).reset_index(drop=True)
    if len(old) == len(new) and old[columns].equals(new[columns]):
        return "identical", False
    before, after = robust_accuracy(old), robust_accuracy(new)
    shared = sorted(set(before) & set(after))
    rose = any(after[e] > before[e] + 1e-12 for e in shared)
    changed = [c for c in columns if len(old) == len(new) and not old[c].equals(new[c])]
    accuracy = ", ".join(f"eps {e:g}: {100 * before[e]:.1f}% -> {100 * after[e]:.1f}%" for e in shared)
    return f"differs in {', '.join(changed) or 'rows'}; robust accuracy {accuracy}", rose


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--identical", action="store_true", help="fail when any shared cell differs")
    args = parser.parse_args()
    old, new = RunStore(args.old).records(), RunStore(args.new).records()
    cells = sorted(set(old["cell"]) | set(new["cell"]))
    worse = differing = 0
    for cell in cells:
        if cell not in set(old["cell"]) or cell not in set(new["cell"]):
            print(f"{cell}: only in the {'old' if cell in set(old['cell']) else 'new'} run")
            continue
        line, rose = compare_cell(old[old["cell"] == cell], new[new["cell"] == cell])
        differing += line != "identical"
        worse += rose
        print(f"{cell}: {line}{'  ROBUST ACCURACY ROSE' if rose else ''}")
    print(f"{len(cells)} cells, {differing} differ, {worse} with a higher robust accuracy")
    return 1 if worse or (args.identical and differing) else 0


if __name__ == "__main__":
    sys.exit(main())
