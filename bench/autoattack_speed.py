"""AutoAttack speed: advbench `autoattack` vs torchattacks `AutoAttack`, same model, batch and epsilon.

Both run AutoAttack's standard version as Croce & Hein define it (APGD-CE, APGD-T with 9
targets, FAB-T with 9 targets, each 100 steps; Square with 5000 queries) on the same inputs:
torchattacks' components are assembled with 100 steps in its MultiAttack, because its
`AutoAttack(version='standard')` leaves APGD, APGD-T and FAB at their 10-step defaults (that
lighter preset's time is printed too, as "ta-10 s"). The epsilon is
calibrated first so that about half the batch survives a 20-step PGD, so every component
has points to attack (at an epsilon where APGD-CE wins everything, the later components
never run and the timing says nothing about them). Prints seconds per call, robust
accuracy of both, and the ratio ours / torchattacks (target <= 1.0 on the MNIST-sized CNN).
Run: .venv/bin/python bench/autoattack_speed.py [--batch 64] [--device cpu]
"""

from __future__ import annotations

import argparse
import platform
import time
import warnings

import torch

from advbench.attacks import AttackTarget, make_attack
from advbench.defenses.networks import mnist_challenge_cnn, small_digits_cnn


def calibrated_epsilon(model, x, y, norm: str) -> float:
    """The epsilon (bisected) at which a 20-step PGD leaves about half the batch robust."""
    target = AttackTarget(model, model, (0.0, 1.0), 10)
    low, high = 0.0, 0.3 if norm == "linf" else 3.0
    pgd = make_attack(f"pgd-{norm}", {"steps": 20})
    for _ in range(8):
        eps = (low + high) / 2
        adv = pgd(target, x, y, [eps]).adversarials[0]
        robust = (model(adv).argmax(1) == y).float().mean().item()
        low, high = (eps, high) if robust > 0.5 else (low, eps)
    return (low + high) / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", default="digits,mnist", help="comma-separated: digits, mnist")
    args = parser.parse_args()

    import torchattacks

    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    device = torch.device(args.device)
    print(f"machine: {platform.machine()} {platform.processor() or ''}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, device {device}, torchattacks {torchattacks.__version__}")
    print(f"batch {args.batch}; seconds per call (one call each, after a warm-up PGD)")
    print(f"{'model':<28} {'norm':<5} {'eps':>7} {'ours s':>8} {'torchatk s':>10} {'ta-10 s':>8} {'ours acc':>9} "
          f"{'ta acc':>7} {'ta-10 acc':>9} {'ours/ta':>8}")
    cases = {"digits": ("digits CNN 1x8x8", small_digits_cnn(1, 10), (1, 8, 8)),
             "mnist": ("MNIST-challenge CNN 1x28x28", mnist_challenge_cnn(1, 10), (1, 28, 28))}
    for key in args.models.split(","):
        label, model, shape = cases[key]
        model = model.to(device).eval()
        x = torch.rand(args.batch, *shape, device=device)
        with torch.no_grad():
            y = model(x).argmax(1)
        target = AttackTarget(model, model, (0.0, 1.0), 10)
        for norm in ("linf", "l2"):
            eps = calibrated_epsilon(model, x, y, norm)
            ours = make_attack("autoattack", {"norm": norm, "version": "standard"})
            name = "Linf" if norm == "linf" else "L2"
            theirs = torchattacks.MultiAttack([
                torchattacks.APGD(model, norm=name, eps=eps, steps=100, loss="ce", n_restarts=1, seed=0),
                torchattacks.APGDT(model, norm=name, eps=eps, steps=100, n_classes=10, n_restarts=1, seed=0),
                torchattacks.FAB(model, norm=name, eps=eps, steps=100, multi_targeted=True, n_classes=10,
                                 n_restarts=1, seed=0),
                torchattacks.Square(model, norm=name, eps=eps, n_queries=5000, n_restarts=1, seed=0)])
            light = torchattacks.AutoAttack(model, norm=name, eps=eps, version="standard", n_classes=10, seed=0)
            timings, accuracies = [], []
            for run in (lambda: ours(target, x, y, [eps]).adversarials[0], lambda: theirs(x, y), lambda: light(x, y)):
                start = time.perf_counter()
                adv = run()
                timings.append(time.perf_counter() - start)
                with torch.no_grad():
                    accuracies.append((model(adv).argmax(1) == y).float().mean().item())
            print(f"{label:<28} {norm:<5} {eps:7.4f} {timings[0]:8.2f} {timings[1]:10.2f} {timings[2]:8.2f} "
                  f"{accuracies[0]:9.1%} {accuracies[1]:7.1%} {accuracies[2]:9.1%} {timings[0] / timings[1]:8.3f}",
                  flush=True)


if __name__ == "__main__":
    main()
