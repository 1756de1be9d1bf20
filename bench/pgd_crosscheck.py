"""Robust accuracy under advbench's PGD vs torchattacks' PGD on the same samples and settings.

Shipped zoo models, digits test samples (seed 0), 40 steps of 2.5 eps / 40, one random start.
Run: .venv/bin/python bench/pgd_crosscheck.py [--samples 200] [--seed 0]
"""

from __future__ import annotations

import argparse

import torch

from advbench.attacks import make_attack
from advbench.data import load_dataset
from advbench.run import attack_target
from advbench.zoo import load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0, help="seed of both attacks' random starts")
    args = parser.parse_args()
    import torchattacks

    data = load_dataset("digits")
    _, x, y = data.test_subset(args.samples, 0)
    print(f"{args.samples} digits test samples; robust accuracy %")
    print(f"{'defense':<8} {'threat':<10} {'advbench':>9} {'torchattacks':>13} {'difference':>11}")
    for name in ("cnn", "pgd-at"):
        model, _ = load(f"{name}-digits", info=data.info)
        target, _ = attack_target(model, 1, data.info.bounds, 10)
        for norm, eps in (("linf", 0.1), ("l2", 1.0)):
            step = 2.5 * eps / 40
            torch.manual_seed(args.seed)
            ours = make_attack(f"pgd-{norm}", {"steps": 40, "step_size": step})(target, x, y, [eps]).adversarials[0]
            ta = (torchattacks.PGD(model, eps=eps, alpha=step, steps=40, random_start=True) if norm == "linf"
                  else torchattacks.PGDL2(model, eps=eps, alpha=step, steps=40, random_start=True))
            torch.manual_seed(args.seed)
            theirs = ta(x, y)
            with torch.no_grad():
                acc_ours = 100 * (model(ours).argmax(1) == y).float().mean().item()
                acc_theirs = 100 * (model(theirs).argmax(1) == y).float().mean().item()
            label = f"{'Linf' if norm == 'linf' else 'L2'} {eps:g}"
            print(f"{name:<8} {label:<10} {acc_ours:9.1f} {acc_theirs:13.1f} {acc_ours - acc_theirs:+11.1f}")


if __name__ == "__main__":
    main()
