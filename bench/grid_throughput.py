"""Grid throughput and peak memory: the demo grid's step-counted attacks on the shipped models.

Runs cnn and pgd-at under fgsm (1 step) and pgd-linf / pgd-l2 (40 steps) at four epsilons
each, through the real runner (records, verification, store), and prints samples x attack
steps per second and the process's peak resident memory (and peak CUDA memory on a GPU).
Run: .venv/bin/python bench/grid_throughput.py [--samples 240] [--device auto]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import torch

from advbench.config import grid_from_dict
from advbench.data import load_dataset
from advbench.run import pick_device, run_grid
from advbench.store import RunStore

ATTACKS = [
    {"name": "fgsm", "epsilons": [0.05, 0.1, 0.2, 0.3]},
    {"name": "pgd-linf", "epsilons": [0.05, 0.1, 0.2, 0.3], "steps": 40},
    {"name": "pgd-l2", "epsilons": [0.5, 1.0, 1.5, 2.0], "steps": 40},
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=240)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    grid = grid_from_dict({"samples": args.samples, "batch_size": 120, "seed": 0, "device": args.device,
                           "defenses": ["cnn", "pgd-at"], "attacks": ATTACKS})
    data = load_dataset("digits")
    zoo = Path(__file__).parents[1] / "zoo"
    device = pick_device(args.device)
    with tempfile.TemporaryDirectory() as results:
        store = RunStore.create(Path(results), grid.fingerprint())
        start = time.perf_counter()
        run_grid(grid, data, store, zoo_dir=zoo)
        seconds = time.perf_counter() - start
    sample_steps = len(grid.defenses) * args.samples * sum(len(a["epsilons"]) * a.get("steps", 1) for a in ATTACKS)
    print(f"device {device}, torch threads {torch.get_num_threads()}")
    print(f"{len(grid.defenses)} defenses x {len(ATTACKS)} attacks x 4 epsilons on {args.samples} digits samples: "
          f"{seconds:.1f} s, {sample_steps / seconds:,.0f} sample-steps/s")
    print(f"peak resident memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
          + (f", peak CUDA memory {torch.cuda.max_memory_allocated() / 2 ** 20:.0f} MiB" if device.type == "cuda" else ""))


if __name__ == "__main__":
    main()
