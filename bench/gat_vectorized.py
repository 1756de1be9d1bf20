"""GAT training cost: K detectors stacked in one network vs K separate trainings.

Both do the same work per epoch: for every detector, `iterations` steps on a batch of
positives and PGD-attacked negatives (same steps, step size and batch). Prints seconds
per epoch of each and the speed-up (target: at least 3x on 2 CPU cores).
Run: .venv/bin/python bench/gat_vectorized.py [--steps 20] [--batch 32] [--iterations 5]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
import torch.nn.functional as F

from advbench.attacks.pgd import project, random_start
from advbench.data import load_dataset
from advbench.defenses.gat import asymmetric_loss, attack_detectors, sample_per_detector
from advbench.defenses.networks import classifier_for_shape
from advbench.defenses.stacked import StackedNetwork
from advbench.norms import Norm


def vectorized_epoch(net, x, groups_pos, groups_neg, args, generator) -> None:
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(args.iterations):
        pos = x[sample_per_detector(groups_pos, args.batch, generator)]
        neg = attack_detectors(net, x[sample_per_detector(groups_neg, args.batch, generator)], eps=args.eps,
                               norm=Norm.LINF, steps=args.steps, step_size=2.5 * args.eps / args.steps,
                               step_rule="adam", bounds=(0.0, 1.0))
        loss = asymmetric_loss(net(pos), net(neg))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def sequential_epoch(nets, x, groups_pos, groups_neg, args, generator) -> None:
    for k, net in enumerate(nets):
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
        for _ in range(args.iterations):
            pos = x[groups_pos[k][torch.randint(len(groups_pos[k]), (args.batch,), generator=generator)]]
            neg = x[groups_neg[k][torch.randint(len(groups_neg[k]), (args.batch,), generator=generator)]]
            delta = ((neg + random_start(neg, args.eps, Norm.LINF)).clamp(0, 1) - neg).requires_grad_(True)
            inner = torch.optim.Adam([delta], lr=2.5 * args.eps / args.steps, maximize=True)
            net.requires_grad_(False)  # as in attack_detectors: input gradients only
            for _ in range(args.steps):
                (grad,) = torch.autograd.grad(net(neg + delta).sum(), delta)
                delta.grad = grad
                inner.step()
                with torch.no_grad():
                    delta.copy_(project(delta, args.eps, Norm.LINF))
                    delta.copy_((neg + delta).clamp(0, 1) - neg)
            net.requires_grad_(True)
            loss = 0.5 * (F.binary_cross_entropy_with_logits(net(pos), torch.ones(args.batch, 1))
                          + F.binary_cross_entropy_with_logits(net((neg + delta).detach()), torch.zeros(args.batch, 1)))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--eps", type=float, default=0.3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    data = load_dataset("digits")
    x, y = data.train_x, data.train_y
    k = data.info.num_classes
    groups_pos = [torch.nonzero(y == c).squeeze(1) for c in range(k)]
    groups_neg = [torch.nonzero(y != c).squeeze(1) for c in range(k)]
    torch.manual_seed(0)
    stacked = StackedNetwork(lambda: classifier_for_shape((1, 8, 8), 1), k)
    separate = [stacked.detector(c) for c in range(k)]
    print(f"machine: {platform.machine()}, torch {torch.__version__}, threads {torch.get_num_threads()}; "
          f"digits, K={k} detectors, {args.iterations} iterations x batch {args.batch}+{args.batch}, "
          f"{args.steps} PGD steps; median of {args.repeats}")
    timings = {"vectorized": [], "sequential": []}
    for _ in range(args.repeats):
        for name, run in (("vectorized", lambda g: vectorized_epoch(stacked, x, groups_pos, groups_neg, args, g)),
                          ("sequential", lambda g: sequential_epoch(separate, x, groups_pos, groups_neg, args, g))):
            start = time.perf_counter()
            run(torch.Generator().manual_seed(0))
            timings[name].append(time.perf_counter() - start)
    vec, seq = (sorted(timings[n])[len(timings[n]) // 2] for n in ("vectorized", "sequential"))
    print(f"vectorized: {vec:.3f} s/epoch   sequential: {seq:.3f} s/epoch   speed-up: {seq / vec:.2f}x")


if __name__ == "__main__":
    main()
