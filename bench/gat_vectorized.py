"""GAT training cost: K detectors stacked in one network vs K separate trainings.

All forms do the same work per epoch: for every detector, `iterations` steps on a batch of
positives and PGD-attacked negatives (same steps, step size and batch). Timed side by side:
the stacked network advbench trains (grouped convolutions, channels-last layout), the same
fed NCHW activations, `torch.func.stack_module_state` + `vmap` over K separate networks,
`torch.compile` of the stacked network (with --compile: minutes of compilation on a CPU),
and K separate trainings. Prints seconds per epoch and each form's speed-up over the
separate trainings (target: at least 3x on 2 CPU cores), then where the stacked form's
time goes (torch profiler, self CPU time per operator).
Run: .venv/bin/python bench/gat_vectorized.py [--steps 20] [--batch 32] [--iterations 5] [--device cpu] [--compile]
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from advbench.attacks.engine import project, random_start
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
            loss = 0.5 * (F.binary_cross_entropy_with_logits(net(pos), torch.ones(args.batch, 1, device=pos.device))
                          + F.binary_cross_entropy_with_logits(net((neg + delta).detach()),
                                                               torch.zeros(args.batch, 1, device=pos.device)))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


class ChannelsFirst(torch.nn.Module):
    """The stacked network fed NCHW activations (its own layout is channels-last; weights shared)."""

    def __init__(self, net: StackedNetwork) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, k = x.shape[:2]
        return self.net.layers(x.reshape(batch, k * x.shape[2], *x.shape[3:]).contiguous()).reshape(batch, k)


class Vmapped(torch.nn.Module):
    """K separate networks evaluated by `torch.func.vmap` over their stacked parameters."""

    def __init__(self, nets: list[torch.nn.Module]) -> None:
        super().__init__()
        from torch.func import stack_module_state

        params, buffers = stack_module_state(nets)
        self.params = torch.nn.ParameterDict({n.replace(".", "_"): torch.nn.Parameter(p) for n, p in params.items()})
        self.names = list(params)
        self.buffers_ = buffers
        self.base = copy.deepcopy(nets[0]).to("meta")

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, K, C, H, W) -> (B, K)
        from torch.func import functional_call, vmap

        params = {n: self.params[n.replace(".", "_")] for n in self.names}

        def one(p, b, xi):
            return functional_call(self.base, (p, b), (xi,))
        return vmap(one, in_dims=(0, 0, 1), out_dims=1)(params, self.buffers_, x).squeeze(-1)


def operator_profile(net, x, groups_pos, groups_neg, args) -> str:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        vectorized_epoch(net, x, groups_pos, groups_neg, args, torch.Generator().manual_seed(0))
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--eps", type=float, default=0.3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile of the stacked network")
    parser.add_argument("--no-profile", action="store_true")
    args = parser.parse_args()
    device = torch.device(args.device)
    data = load_dataset("digits")
    x, y = data.train_x.to(device), data.train_y.to(device)
    k = data.info.num_classes
    groups_pos = [torch.nonzero(y == c).squeeze(1) for c in range(k)]
    groups_neg = [torch.nonzero(y != c).squeeze(1) for c in range(k)]
    torch.manual_seed(0)
    stacked = StackedNetwork(lambda: classifier_for_shape((1, 8, 8), 1), k).to(device)
    separate = [stacked.detector(c).to(device) for c in range(k)]
    forms = {
        "stacked (advbench)": lambda g: vectorized_epoch(stacked, x, groups_pos, groups_neg, args, g),
        "stacked, NCHW layout": lambda g: vectorized_epoch(ChannelsFirst(copy.deepcopy(stacked)), x, groups_pos,
                                                           groups_neg, args, g),
        "vmap over K networks": lambda g: vectorized_epoch(Vmapped([copy.deepcopy(n) for n in separate]), x,
                                                           groups_pos, groups_neg, args, g),
    }
    if args.compile:
        compiled = torch.compile(copy.deepcopy(stacked))
        forms["stacked, torch.compile"] = lambda g: vectorized_epoch(compiled, x, groups_pos, groups_neg, args, g)
    forms["K separate networks"] = lambda g: sequential_epoch(separate, x, groups_pos, groups_neg, args, g)
    print(f"machine: {platform.machine()}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"device {device}; digits, K={k} detectors, {args.iterations} iterations x batch {args.batch}+{args.batch}, "
          f"{args.steps} PGD steps; median of {args.repeats} epochs after one warm-up")
    timings: dict[str, list[float]] = {name: [] for name in forms}
    for name, run in forms.items():
        run(torch.Generator().manual_seed(0))  # warm-up (and compilation)
    for _ in range(args.repeats):
        for name, run in forms.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            run(torch.Generator().manual_seed(0))
            if device.type == "cuda":
                torch.cuda.synchronize()
            timings[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) for name, values in timings.items()}
    reference = medians["K separate networks"]
    for name, seconds in medians.items():
        print(f"{name:<26} {seconds:7.3f} s/epoch   speed-up over K separate networks: {reference / seconds:5.2f}x")
    if not args.no_profile and device.type == "cpu":
        print("\nwhere the stacked form's time goes (one epoch, torch profiler):")
        print(operator_profile(stacked, x, groups_pos, groups_neg, args))


if __name__ == "__main__":
    main()
