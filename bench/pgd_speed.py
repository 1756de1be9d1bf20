"""PGD speed: ours vs foolbox's, torchattacks' and a hand-written torch loop.

All four run the same model, batch, steps and step size (random start, sign steps for
Linf, normalised steps for L2). The raw loop does only the forward/backward passes PGD
needs: the practical limit for that model. Prints seconds per attack call (median of
`--repeats`) and the ratios ours / foolbox, ours / torchattacks (targets <= 1.0) and
ours / raw loop (target <= 1.15).
Run: .venv/bin/python bench/pgd_speed.py [--repeats 5] [--batch 128] [--steps 40]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
import warnings

import torch
import torch.nn.functional as F

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


def raw_pgd(model, x, y, eps: float, step: float, steps: int, norm: str) -> torch.Tensor:
    """The minimal PGD loop: one forward and one backward pass per step."""
    flat_norm = lambda t: t.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (t.dim() - 1)))  # noqa: E731
    if norm == "linf":
        adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)
    else:
        noise = torch.randn_like(x)
        adv = (x + noise / flat_norm(noise) * eps * torch.rand(len(x), 1, 1, 1, device=x.device)).clamp(0, 1)
    for _ in range(steps):
        adv.requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(adv), y, reduction="sum"), adv)
        with torch.no_grad():
            if norm == "linf":
                adv = torch.min(torch.max(adv + step * grad.sign(), x - eps), x + eps).clamp(0, 1)
            else:
                delta = adv + step * grad / flat_norm(grad) - x
                delta = delta * (eps / flat_norm(delta)).clamp(max=1)
                adv = (x + delta).clamp(0, 1)
    return adv.detach()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    import foolbox as fb
    import foolbox.attacks as fa
    import torchattacks

    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    device = torch.device(args.device)
    print(f"machine: {platform.machine()} {platform.processor() or ''}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, device {device}, foolbox {fb.__version__}, "
          f"torchattacks {torchattacks.__version__}")
    print(f"batch {args.batch}, {args.steps} steps, median of {args.repeats} runs; seconds per call")
    print(f"{'model':<28} {'attack':<9} {'ours':>8} {'foolbox':>8} {'torchatk':>8} {'raw loop':>8}   "
          f"{'/foolbox':>8} {'/torchatk':>9} {'/raw':>6}")
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
            foolbox_pgd = (fa.LinfPGD if norm == "linf" else fa.L2PGD)(steps=args.steps, abs_stepsize=step,
                                                                       random_start=True)
            ta_pgd = (torchattacks.PGD(model, eps=eps, alpha=step, steps=args.steps, random_start=True)
                      if norm == "linf" else
                      torchattacks.PGDL2(model, eps=eps, alpha=step, steps=args.steps, random_start=True))
            t_ours = timed(lambda: ours(target, x, y, [eps]), args.repeats)
            t_fb = timed(lambda: foolbox_pgd(fmodel, x, y, epsilons=[eps]), args.repeats)
            t_ta = timed(lambda: ta_pgd(x, y), args.repeats)
            t_raw = timed(lambda: raw_pgd(model, x, y, eps, step, args.steps, norm), args.repeats)
            print(f"{label:<28} pgd-{norm:<5} {t_ours:8.4f} {t_fb:8.4f} {t_ta:8.4f} {t_raw:8.4f}   "
                  f"{t_ours / t_fb:8.3f} {t_ours / t_ta:9.3f} {t_ours / t_raw:6.3f}")


if __name__ == "__main__":
    main()
