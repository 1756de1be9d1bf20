"""Cross-check: advbench PGD and `autoattack` against the original AutoAttack, same samples.

For each defense x threat model, one advbench run (PGD 40 steps and `autoattack`, every
adversarial verified and re-predicted) and the original AutoAttack (Croce and Hein's own code,
`pyautoattack`, version standard) on the same test samples; prints robust accuracy in % for the
three, the difference advbench autoattack - original (target: <= +0.5 points) and both wall times.
Run: .venv/bin/python bench/autoattack_crosscheck.py [--samples 300] [--defense cnn --defense pgd-at]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch


from advbench.config import AttackSpec, DefenseSpec, Grid
from advbench.data import load_dataset
from advbench.evaluation import Paths, evaluate
from advbench.read_model import CellRecords, outcomes_at
from advbench.zoo import load

THREATS = (("linf", 0.1, "pgd-linf"), ("l2", 1.0, "pgd-l2"))


def advbench_accuracy(defense: str, norm: str, eps: float, pgd: str, samples: int, seed: int,
                      results: Path) -> dict[str, float]:
    grid = Grid((DefenseSpec(defense),), (AttackSpec(pgd, (eps,)), AttackSpec("autoattack", (eps,),
                                                                           (("norm", norm),))),
                samples=samples, batch_size=samples, seed=seed, sanity=False)
    run = evaluate(grid, paths=Paths(results_dir=results), artifacts=False)
    records = run.store.records()
    return {attack: float(outcomes_at(CellRecords.of(cell), eps)["robust"].mean()) * 100
            for attack, cell in records.groupby("attack")}


def original_accuracy(defense: str, norm: str, eps: float, samples: int, seed: int) -> float:
    import pyautoattack

    data = load_dataset("digits")
    _, x, y = data.test_subset(samples, seed)
    model, _ = load(f"{defense}-digits", None, info=data.info)
    model.eval()
    attack = pyautoattack.AutoAttack(model, norm="Linf" if norm == "linf" else "L2", eps=eps, version="standard",
                                     seed=seed)
    adv, _ = attack.run_standard_evaluation(x, y, batch_size=samples)
    with torch.no_grad():
        clean_ok = model(x).argmax(1) == y
        robust = clean_ok & (model(adv).argmax(1) == y)
    return float(robust.float().mean()) * 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--defense", action="append", default=None)
    args = parser.parse_args()
    defenses = args.defense or ["cnn", "pgd-at"]
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, "
          f"{args.samples} samples")
    print(f"{'defense':8} {'threat':10} {'advbench PGD':>13} {'advbench AA':>12} {'original AA':>12} {'AA diff':>8}"
          f" {'ours s':>7} {'orig s':>7}  (ours s: PGD and autoattack)")
    with tempfile.TemporaryDirectory() as scratch:
        for defense in defenses:
            for norm, eps, pgd in THREATS:
                started = time.perf_counter()
                ours = advbench_accuracy(defense, norm, eps, pgd, args.samples, args.seed, Path(scratch))
                ours_seconds, started = time.perf_counter() - started, time.perf_counter()
                theirs = original_accuracy(defense, norm, eps, args.samples, args.seed)
                theirs_seconds = time.perf_counter() - started
                print(f"{defense:8} {norm + ' ' + format(eps, 'g'):10} {ours[pgd]:13.1f} {ours['autoattack']:12.1f} "
                      f"{theirs:12.1f} {ours['autoattack'] - theirs:+8.1f} {ours_seconds:7.1f} {theirs_seconds:7.1f}",
                      flush=True)


if __name__ == "__main__":
    main()
