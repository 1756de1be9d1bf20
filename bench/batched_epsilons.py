"""All epsilons of a fixed-epsilon attack in one batched run vs one run per epsilon.

Same model, samples, seed and settings; the examples are identical (checked here too).
Prints seconds per call (median of `--repeats`) and new/old (target <= 0.5).
Run: .venv/bin/python bench/batched_epsilons.py [--samples 360] [--steps 40] [--device cpu]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from advbench.attacks import AttackTarget, make_attack
from advbench.defenses.networks import mnist_challenge_cnn, small_digits_cnn


def timed(fn, repeats: int) -> tuple[float, object]:
    result = fn()  # warm-up
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=360)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"machine: {platform.machine()} {platform.processor() or ''}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, device {device}")
    print(f"{args.samples} samples, {args.steps} steps, median of {args.repeats}; seconds per call")
    print(f"{'model':<28} {'attack':<9} {'epsilons':<22} {'per eps':>8} {'batched':>8} {'new/old':>8}  identical")
    cases = [("digits CNN 1x8x8", small_digits_cnn(1, 10), (1, 8, 8)),
             ("MNIST-challenge CNN 1x28x28", mnist_challenge_cnn(1, 10), (1, 28, 28))]
    for label, model, shape in cases:
        torch.manual_seed(0)
        model = model.to(device).eval()
        x = torch.rand(args.samples, *shape, device=device)
        y = model(x).argmax(1)
        target = AttackTarget(model, model, (0.0, 1.0), 10)
        for name, epsilons in (("pgd-linf", [0.05, 0.1, 0.2, 0.3]), ("pgd-l2", [0.5, 1.0, 1.5, 2.0])):
            attack = make_attack(name, {"steps": args.steps})
            attack.batch_epsilons = True  # measure the batched run on any device

            def batched():
                torch.manual_seed(1)
                return attack(target, x, y, epsilons)

            def per_epsilon():
                torch.manual_seed(1)
                return attack(target, x, y, epsilons)

            t_new, new = timed(batched, args.repeats)
            attack.run_epsilons = lambda *a: None  # the engine's runs one epsilon at a time
            t_old, old = timed(per_epsilon, args.repeats)
            same = all(torch.equal(a, b) for a, b in zip(new.adversarials, old.adversarials))
            print(f"{label:<28} {name:<9} {str(epsilons):<22} {t_old:8.3f} {t_new:8.3f} {t_new / t_old:8.3f}  {same}")


if __name__ == "__main__":
    main()
