"""AutoAttack speed: advbench `autoattack` vs the original AutoAttack (`pyautoattack`, Croce and
Hein's own code), component by component, same model, inputs, batch and epsilon.

Both run the standard version (APGD-CE; APGD-T and FAB-T with 9 targets, 100 steps each;
Square with 5000 queries) the way the ensemble does: each component attacks only the points
every earlier component of the same implementation left standing. The original's components are
called exactly as its `run_standard_evaluation` calls them (same settings, seed 0); ours are
advbench's ensemble members. The epsilon is calibrated first so that about half the batch
survives a 20-step PGD, so every component has points to attack. Prints, per component, the
points it got, seconds, the points left and ours / original; then the ensemble's totals (target:
ratio <= 1.0 and the same robust accuracy). Repeats are interleaved (ours, original, ours, ...)
and the medians printed; the load average is printed with them.
Run: .venv/bin/python bench/autoattack_speed.py [--batch 64] [--models digits,mnist,resnet18] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings
from typing import Callable

import torch

from advbench.attacks import AttackTarget, make_attack
from advbench.defenses.networks import mnist_challenge_cnn, small_digits_cnn

COMPONENTS = ("apgd-ce", "apgd-t", "fab-t", "square")


def calibrated_epsilon(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, norm: str) -> float:
    """The epsilon (bisected) at which a 20-step PGD leaves about half the batch robust."""
    target = AttackTarget(model, model, (0.0, 1.0), 10)
    low, high = 0.0, 0.3 if norm == "linf" else 3.0
    pgd = make_attack(f"pgd-{norm}", {"steps": 20})
    for _ in range(8):
        eps = (low + high) / 2
        adv = pgd(target, x, y, [eps]).adversarials[0]
        with torch.no_grad():
            robust = (model(adv).argmax(1) == y).float().mean().item()
        low, high = (eps, high) if robust > 0.5 else (low, eps)
    return (low + high) / 2


def original_components(model: torch.nn.Module, norm: str, eps: float, device: torch.device
                        ) -> dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
    """The original's components, set up and called as its run_standard_evaluation does."""
    import pyautoattack

    aa = pyautoattack.AutoAttack(model, norm="Linf" if norm == "linf" else "L2", eps=eps, version="standard",
                                 device=device, seed=0)

    def apgd_ce(x, y):
        aa.apgd.loss, aa.apgd.seed = "ce", aa.get_seed()
        return aa.apgd.perturb(x, y)

    def apgd_t(x, y):
        aa.apgd_targeted.seed = aa.get_seed()
        return aa.apgd_targeted.perturb(x, y)

    def fab_t(x, y):
        aa.fab.targeted, aa.fab.n_restarts, aa.fab.seed = True, 1, aa.get_seed()
        return aa.fab.perturb(x, y)

    def square(x, y):
        aa.square.seed = aa.get_seed()
        return aa.square.perturb(x, y)

    return dict(zip(COMPONENTS, (apgd_ce, apgd_t, fab_t, square)))


def our_components(model: torch.nn.Module, norm: str, eps: float
                   ) -> dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
    target = AttackTarget(model, model, (0.0, 1.0), 10)
    members = make_attack("autoattack", {"norm": norm, "version": "standard"}).component_attacks(target)
    return {name: (lambda x, y, member=member: member.run(target, x, y, epsilon=eps).points)
            for name, member in members.items()}


def ensemble(model: torch.nn.Module, components: dict, x: torch.Tensor, y: torch.Tensor
             ) -> tuple[dict[str, tuple[int, float, int]], int]:
    """Each component on the points still standing: (points in, seconds, points left) per
    component, and the points robust at the end."""
    torch.manual_seed(0)
    with torch.no_grad():
        standing = model(x).argmax(1) == y
    log = {}
    for name in COMPONENTS:
        idx = standing.nonzero().squeeze(1)
        if len(idx) == 0:
            log[name] = (0, 0.0, 0)
            continue
        start = time.perf_counter()
        adv = components[name](x[idx].clone(), y[idx].clone())
        seconds = time.perf_counter() - start
        with torch.no_grad():
            standing[idx[model(adv).argmax(1) != y[idx]]] = False
        log[name] = (len(idx), seconds, int(standing.sum()))
    return log, int(standing.sum())


def cases(models: list[str]) -> list[tuple[str, torch.nn.Module, tuple[int, ...]]]:
    from torchvision.models import resnet18

    known = {"digits": ("digits CNN 1x8x8", lambda: small_digits_cnn(1, 10), (1, 8, 8)),
             "mnist": ("MNIST-challenge CNN 1x28x28", lambda: mnist_challenge_cnn(1, 10), (1, 28, 28)),
             "resnet18": ("ResNet-18 3x32x32", lambda: resnet18(num_classes=10), (3, 32, 32))}
    return [(known[m][0], known[m][1](), known[m][2]) for m in models]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", default="digits,mnist", help="comma-separated: digits, mnist, resnet18")
    parser.add_argument("--norms", default="linf,l2")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    import pyautoattack  # noqa: F401 - fail early when the reference is missing

    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    device = torch.device(args.device)
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, device {device}; batch {args.batch}; median of {args.repeats} "
          f"interleaved repeat(s)")
    print(f"{'model':<28} {'norm':<5} {'eps':>7} {'component':<9} {'in':>4} {'ours s':>8} {'orig s':>8} "
          f"{'left ours':>9} {'left orig':>9} {'ours/orig':>9}")
    for label, model, shape in cases(args.models.split(",")):
        model = model.to(device).eval()
        generator = torch.Generator().manual_seed(0)
        x = torch.rand(args.batch, *shape, generator=generator).to(device)
        with torch.no_grad():
            y = model(x).argmax(1)
        for norm in args.norms.split(","):
            eps = calibrated_epsilon(model, x, y, norm)
            runs = {"ours": [], "orig": []}
            for _ in range(args.repeats):
                runs["ours"].append(ensemble(model, our_components(model, norm, eps), x, y))
                runs["orig"].append(ensemble(model, original_components(model, norm, eps, device), x, y))
            ours, orig = runs["ours"][0], runs["orig"][0]
            for name in COMPONENTS:
                mine = statistics.median(r[0][name][1] for r in runs["ours"])
                theirs = statistics.median(r[0][name][1] for r in runs["orig"])
                ratio = f"{mine / theirs:9.3f}" if theirs > 0 else f"{'-':>9}"
                print(f"{label:<28} {norm:<5} {eps:7.4f} {name:<9} {ours[0][name][0]:4d} {mine:8.2f} {theirs:8.2f} "
                      f"{ours[0][name][2]:9d} {orig[0][name][2]:9d} {ratio}", flush=True)
            mine = statistics.median(sum(s for _, s, _ in r[0].values()) for r in runs["ours"])
            theirs = statistics.median(sum(s for _, s, _ in r[0].values()) for r in runs["orig"])
            print(f"{label:<28} {norm:<5} {eps:7.4f} {'ensemble':<9} {args.batch:4d} {mine:8.2f} {theirs:8.2f} "
                  f"{ours[1]:9d} {orig[1]:9d} {mine / theirs:9.3f}", flush=True)


if __name__ == "__main__":
    main()
