"""AutoAttack speed: advbench `autoattack` vs torchattacks `AutoAttack`, same model, batch and epsilon.

Both run AutoAttack's standard version (APGD-CE, APGD-T with 9 targets, FAB-T with 9
targets, Square with 5000 queries; 100 steps each) on the same inputs. The epsilon is
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
    print(f"{'model':<28} {'norm':<5} {'eps':>7} {'ours s':>8} {'torchatk s':>10} {'ours acc':>9} {'ta acc':>7} "
          f"{'ours/ta':>8}")
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
            theirs = torchattacks.AutoAttack(model, norm="Linf" if norm == "linf" else "L2", eps=eps,
                                             version="standard", n_classes=10, seed=0)
            start = time.perf_counter()
            adv_ours = ours(target, x, y, [eps]).adversarials[0]
            t_ours = time.perf_counter() - start
            start = time.perf_counter()
            adv_theirs = theirs(x, y)
            t_theirs = time.perf_counter() - start
            with torch.no_grad():
                acc_ours = (model(adv_ours).argmax(1) == y).float().mean().item()
                acc_theirs = (model(adv_theirs).argmax(1) == y).float().mean().item()
            print(f"{label:<28} {norm:<5} {eps:7.4f} {t_ours:8.2f} {t_theirs:10.2f} {acc_ours:9.1%} "
                  f"{acc_theirs:7.1%} {t_ours / t_theirs:8.3f}", flush=True)


if __name__ == "__main__":
    main()
