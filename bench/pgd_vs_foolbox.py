"""Our PGD engine vs foolbox's LinfPGD/L2PGD: same model, batch, steps and step size.

Prints seconds per attack call for each and the ratio ours / foolbox (target <= 1.0).
Run: .venv/bin/python bench/pgd_vs_foolbox.py [--repeats 5] [--batch 128] [--steps 40]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
import warnings

import torch

from advbench.attacks import AttackTarget, make_attack
from advbench.defenses.networks import mnist_challenge_cnn, small_digits_cnn


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    import foolbox as fb
    import foolbox.attacks as fa

    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    device = torch.device(args.device)
    print(f"machine: {platform.machine()} {platform.processor() or ''}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, device {device}, foolbox {fb.__version__}")
    print(f"batch {args.batch}, {args.steps} steps, median of {args.repeats} runs")
    cases = [
        ("digits CNN 1x8x8", small_digits_cnn(1, 10), (1, 8, 8)),
        ("MNIST-challenge CNN 1x28x28", mnist_challenge_cnn(1, 10), (1, 28, 28)),
    ]
    for label, model, shape in cases:
        model = model.to(device).eval()
        x = torch.rand(args.batch, *shape, device=device)
        y = model(x).argmax(1)
        fmodel = fb.PyTorchModel(model, bounds=(0, 1), device=device)
        target = AttackTarget(model, model, (0.0, 1.0), 10)
        for norm, eps in (("linf", 0.1), ("l2", 1.0)):
            step = 2.5 * eps / args.steps
            ours = make_attack(f"pgd-{norm}", {"steps": args.steps, "step_size": step})
            theirs = (fa.LinfPGD if norm == "linf" else fa.L2PGD)(steps=args.steps, abs_stepsize=step, random_start=True)
            t_ours = timed(lambda: ours(target, x, y, [eps]), args.repeats)
            t_fb = timed(lambda: theirs(fmodel, x, y, epsilons=[eps]), args.repeats)
            print(f"{label:<30} pgd-{norm:<5} ours {t_ours:.4f}s  foolbox {t_fb:.4f}s  ratio {t_ours / t_fb:.3f}")


if __name__ == "__main__":
    main()
