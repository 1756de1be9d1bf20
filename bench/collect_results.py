"""Run every benchmark and write bench/RESULTS.md with their output and the machine description.
Run: .venv/bin/python bench/collect_results.py [--quick]
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
    ("GAT: K detectors stacked vs K separate trainings (target >= 3x)", "gat_vectorized.py", [], []),
    ("ABS/E-ABS inference batched over classes and starting points vs looped", "eabs_inference.py", [],
     ["--looped-samples", "2"]),
    ("E-ABS under pgd-l2 80x5 with EOT 5: warm-started vs full inference at every step (target <= 0.33; "
     "accuracy inside the old run's 95% interval)", "eabs_attack.py", ["--samples", "40"],
     ["--samples", "12", "--restarts", "1"]),
    ("PGN vs PGD adversarial training, seconds per epoch", "pgn_vs_pgd_at.py", [], []),
    ("AutoAttack: advbench autoattack vs torchattacks AutoAttack (target <= 1.0 on the MNIST-sized CNN)",
     "autoattack_speed.py", [], ["--batch", "32"]),
]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{cpu}, {os.cpu_count()} CPU cores, {gpu}; Python {platform.python_version()}, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and samples")
    args = parser.parse_args()
    sections = [f"# Benchmark results\n\nMeasured {dt.date.today().isoformat()} on: {machine()}.\n"
                "Each section is the verbatim output of the script named in it; ratios are measured side by side "
                "in one run. Regenerate with `.venv/bin/python bench/collect_results.py`.\n"]
    for title, script, full, quick in BENCHMARKS:
        command = [sys.executable, str(HERE / script), *(quick if args.quick else full)]
        print(f"running {script} ...", flush=True)
        done = subprocess.run(command, capture_output=True, text=True)
        output = done.stdout.strip() if done.returncode == 0 else f"FAILED ({done.returncode}):\n{done.stderr[-2000:]}"
        sections.append(f"## {title}\n\n`bench/{script} {' '.join(quick if args.quick else full)}`\n\n```\n{output}\n```\n")
    (HERE / "RESULTS.md").write_text("\n".join(sections))
    print(f"wrote {HERE / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
