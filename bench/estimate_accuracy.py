"""How far the demo's time left is from the time it really took (issue 22 target: every reading
within 2x of the truth, idle and under a concurrent load).

Runs `advbench run --fresh` (the demo, plain output) in DIR, which must hold the zoo, and stamps
each line as it arrives. Each progress line `grid cells: D/T, M:SS elapsed, about M:SS left` is
set against the seconds that really followed until the last cell's records were written (the
grid's end: what the line estimates; judged) and until the run's headline (the report's few
seconds on top, which a user waits for too; listed). With `--load N`, N busy processes share the
cores for the whole run. Readings with under 10 s left are listed but not judged.
Run: .venv/bin/python bench/estimate_accuracy.py DIR [--load 1] [--repeats 2]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import subprocess
import sys
import time
from pathlib import Path

PROGRESS = re.compile(r"^grid cells: \d+/\d+, (?:(\d+):)?(\d+):(\d+) elapsed, about (?:(\d+):)?(\d+):(\d+) left")
JUDGED_FROM = 10.0  # seconds of truth below which a reading is listed, not judged


def _seconds(hours: str | None, minutes: str, seconds: str) -> float:
    return 3600 * int(hours or 0) + 60 * int(minutes) + int(seconds)


def _busy() -> None:
    while True:
        pass


def timed_run(directory: Path) -> tuple[list[tuple[float, float]], float, float, float]:
    """(seconds since start, time left said) of each progress reading, the grid's end (the newest
    record file), the headline's arrival and the whole run's wall seconds."""
    advbench = Path(sys.executable).with_name("advbench")
    started, started_wall = time.monotonic(), time.time()
    process = subprocess.Popen([str(advbench), "run", "--fresh"], cwd=directory, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    readings, headline = [], None
    assert process.stdout is not None
    for line in process.stdout:
        now = time.monotonic() - started
        match = PROGRESS.match(line)
        if match:
            readings.append((now, _seconds(*match.groups()[3:])))
        elif headline is None and readings and not line.startswith(("grid cells", "run ")):
            headline = now
    process.wait()
    wall = time.monotonic() - started
    run = max((directory / "results").iterdir(), key=lambda path: path.stat().st_mtime)
    grid_end = max(path.stat().st_mtime for path in (run / "records").glob("*.csv")) - started_wall
    return readings, grid_end, headline if headline is not None else wall, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--load", type=int, default=0, help="busy processes running beside the demo")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    busy = [multiprocessing.Process(target=_busy, daemon=True) for _ in range(args.load)]
    for process in busy:
        process.start()
    worst = 1.0
    try:
        print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} before; {args.load} busy process(es) beside")
        for repeat in range(args.repeats):
            readings, grid_end, headline, wall = timed_run(args.directory)
            print(f"run {repeat + 1}: {wall:.0f} s wall, grid done at {grid_end:.0f} s, headline at {headline:.0f} s; "
                  f"load average {os.getloadavg()[0]:.2f} after")
            print(f"  {'at s':>6} {'said left':>10} {'grid left':>10} {'said/grid':>10} {'to headline':>12} "
                  f"{'said/that':>10}")
            for at, said in readings:
                real, waited = grid_end - at, headline - at
                ratio = said / real if real > 0 else float("inf")
                judged = real >= JUDGED_FROM
                if judged:
                    worst = max(worst, ratio, 1 / ratio if ratio > 0 else float("inf"))
                print(f"  {at:6.0f} {said:10.0f} {real:10.0f} {ratio:10.2f} {waited:12.0f} "
                      f"{said / waited if waited > 0 else float('inf'):10.2f}{'' if judged else '  (not judged)'}")
    finally:
        for process in busy:
            process.terminate()
    print(f"worst judged reading: {worst:.2f}x off (target: at most 2x)")


if __name__ == "__main__":
    main()
