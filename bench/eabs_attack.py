"""E-ABS under attack: warm-started latent inference vs the full inference at every attack step.

One advbench run attacks the shipped `eabs` twice on the same samples with the same seed:
`eabs` (every gradient from the full 20-step inference, the default) and `eabs:variational:warm`
(each attack step continues the previous step's q(z) for a few steps). Both run EOT's passes
as one batch, and both are judged by the full inference: the runner re-predicts every adversarial.
Prints seconds per sample of each cell, new/old (target <= 0.33) and both robust accuracies
with 95% Wilson intervals (target: new inside old's interval).
Run: .venv/bin/python bench/eabs_attack.py [--samples 200] [--steps 80] [--restarts 5] [--eot 5] [--eps 0.6]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path

import torch

from advbench.config import AttackSpec, DefenseSpec, Grid
from advbench.evaluation import Paths, RunOptions, evaluate
from advbench.read_model import CellRecords, outcomes_at
from advbench.stats import wilson_interval

OLD, NEW = "eabs", "eabs:variational:warm"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--restarts", type=int, default=5)
    parser.add_argument("--eot", type=int, default=5)
    parser.add_argument("--eps", type=float, default=0.6)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    attack = AttackSpec("pgd-l2", (args.eps,), (("steps", args.steps), ("restarts", args.restarts)), eot=args.eot)
    grid = Grid((DefenseSpec(OLD), DefenseSpec(NEW)), (attack,), samples=args.samples, batch_size=args.batch,
                seed=0, device=args.device, sanity=False)
    with tempfile.TemporaryDirectory() as scratch:
        run = evaluate(grid, paths=Paths(results_dir=Path(scratch)), artifacts=False, run=RunOptions(fresh=True))
        records = run.store.records()
        timings = run.manifest.timings.cells
    print(f"machine: {platform.machine()} {platform.processor() or ''}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, device {args.device}")
    print(f"pgd-l2 {args.steps} steps x {args.restarts} restarts, EOT {args.eot}, eps {args.eps:g}, "
          f"{args.samples} digits samples, batch {args.batch}")
    print(f"{'defense':<24} {'s/sample':>9} {'robust acc':>11} {'95% interval':>16}")
    seconds, accuracy = {}, {}
    for defense, cell in records.groupby("defense"):
        robust = outcomes_at(CellRecords.of(cell), args.eps)["robust"]
        low, high = wilson_interval(int(robust.sum()), len(robust))
        cell_id = next(key for key in timings if key.startswith(f"{defense}__"))
        seconds[defense] = timings[cell_id] / len(robust)
        accuracy[defense] = (float(robust.mean()), low, high)
        print(f"{defense:<24} {seconds[defense]:9.3f} {accuracy[defense][0]:11.3f}   [{low:.3f}, {high:.3f}]")
    inside = accuracy[OLD][1] <= accuracy[NEW][0] <= accuracy[OLD][2]
    print(f"new/old seconds per sample: {seconds[NEW] / seconds[OLD]:.3f} (target <= 0.33); "
          f"new accuracy inside old's 95% interval: {inside}")


if __name__ == "__main__":
    main()
