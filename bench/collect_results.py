"""Run every benchmark and write bench/RESULTS.md with their output and the machine description.
Run: .venv/bin/python bench/collect_results.py [--quick] [--device cuda]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch

HERE = Path(__file__).parent
BENCHMARKS = [
    ("PGD speed: ours vs foolbox, torchattacks and a raw torch loop (targets: <= 1.0, <= 1.0, <= 1.15)",
     "pgd_speed.py", ["--repeats", "5"], ["--repeats", "2"]),
    ("Grid throughput and peak memory", "grid_throughput.py", [], ["--samples", "120"]),
    ("All epsilons in one batched run vs one run per epsilon (target <= 0.5; on by default only on a GPU)",
     "batched_epsilons.py", [], ["--samples", "120", "--repeats", "1"]),
    ("GAT: K detectors stacked vs K separate trainings (target >= 3x), with the alternatives tried and the profile",
     "gat_vectorized.py", ["--compile"], []),
    ("ABS/E-ABS inference batched over classes and starting points vs looped", "eabs_inference.py", [],
     ["--looped-samples", "2"]),
    ("E-ABS under pgd-l2 80x5 with EOT 5: warm-started vs full inference at every step (target <= 0.33; "
     "accuracy inside the old run's 95% interval, wide at 40 samples; on 200: 74.5% vs 70.0% [63.3, 75.9], "
     "so it is opt-in)", "eabs_attack.py", ["--samples", "40"],
     ["--samples", "12", "--restarts", "1"]),
    ("PGN vs PGD adversarial training, seconds per epoch", "pgn_vs_pgd_at.py", [], []),
    ("AutoAttack: advbench autoattack vs the original (pyautoattack), per component (target <= 1.0 on each)",
     "autoattack_speed.py", [], ["--batch", "32"]),
    ("Report views with each cell's outcomes computed once vs recomputed per request (linear in cells)",
     "report_speed.py", [], ["--cells", "5", "10", "--repeats", "1"]),
]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{cpu}, {os.cpu_count()} CPU cores, {gpu}; Python {platform.python_version()}, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and samples")
    parser.add_argument("--device", default="cpu", help="passed to every script (cpu, cuda)")
    parser.add_argument("--output", type=Path, default=None,
                        help="default: bench/RESULTS.md on the cpu, bench/RESULTS-<device>.md otherwise")
    args = parser.parse_args()
    output_path = args.output or HERE / ("RESULTS.md" if args.device == "cpu" else f"RESULTS-{args.device.split(':')[0]}.md")
    sections = [f"# Benchmark results ({args.device})\n\nMeasured {dt.date.today().isoformat()} on: {machine()}.\n"
                "Each section is the verbatim output of the script named in it; ratios are measured side by side "
                f"in one run. Regenerate with `.venv/bin/python bench/collect_results.py --device {args.device}`.\n"]
    for title, script, full, quick in BENCHMARKS:
        options = [*(quick if args.quick else full), "--device", args.device]
        command = [sys.executable, str(HERE / script), *options]
        print(f"running {script} ...", flush=True)
        done = subprocess.run(command, capture_output=True, text=True)
        output = done.stdout.strip() if done.returncode == 0 else f"FAILED ({done.returncode}):\n{done.stderr[-2000:]}"
        sections.append(f"## {title}\n\n`bench/{script} {' '.join(options)}`\n\n```\n{output}\n```\n")
    output_path.write_text("\n".join(sections))
    print(f"wrote {output_path}")


if __name__ == "__main__":
    main()
