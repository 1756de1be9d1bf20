"""CPU seconds of `advbench report` on one run, per format, for this checkout and an older one.

Each measurement is a fresh process (`python -m advbench report --format F`), timed by the
kernel (user + system CPU of the child), so import time counts as a user would feel it.
Repeats are interleaved (old, new, old, new, ...) and the median is printed with new/old.

Run: .venv/bin/python bench/report_cpu.py RUN_DIR [--old-tree /tmp/old] [--repeats 3]
     (RUN_DIR is results/<run id>, e.g. of `advbench run` on the demo; an old tree is a
      `git worktree add /tmp/old <commit>`; without it only this checkout is timed)
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

FORMATS = ("table", "csv", "latex", "html")
HERE = Path(__file__).parents[1]


def cpu_seconds(tree: Path, run_dir: Path, fmt: str) -> float:
    """User + system CPU of one `advbench report` child process running the code in `tree`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    # run outside both trees: `python -m` puts the working directory first on sys.path
    done = subprocess.run([sys.executable, "-m", "advbench", "report", run_dir.name, "--results-dir",
                           str(run_dir.parent), "--format", fmt], env=env, capture_output=True, text=True,
                          cwd=run_dir.parent)
    if done.returncode != 0:
        raise SystemExit(f"{tree}: report --format {fmt} failed: {done.stderr.strip().splitlines()[-1:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--old-tree", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    trees = {"new": HERE} | ({"old": args.old_tree.resolve()} if args.old_tree else {})
    args.run_dir = args.run_dir.resolve()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; run {args.run_dir}; "
          f"median CPU seconds of {args.repeats} interleaved repeats")
    print(f"{'format':<8} " + " ".join(f"{name:>8}" for name in trees) + ("  new/old" if args.old_tree else ""))
    for fmt in FORMATS:
        seconds: dict[str, list[float]] = {name: [] for name in trees}
        for _ in range(args.repeats):
            for name, tree in trees.items():
                seconds[name].append(cpu_seconds(tree, args.run_dir, fmt))
        medians = {name: statistics.median(values) for name, values in seconds.items()}
        ratio = f"  {medians['new'] / medians['old']:.2f}" if args.old_tree else ""
        print(f"{fmt:<8} " + " ".join(f"{medians[name]:>8.2f}" for name in trees) + ratio)


if __name__ == "__main__":
    main()
