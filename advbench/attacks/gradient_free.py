"""Gradient-free attacks: `boundary` (foolbox's decision-based attack) and `pgd-est` /
`pgd-est-l2` (PGD on finite-difference gradient estimates).

They query only the defense's real decisions (`target.decision_model`), never its
surrogate gradient, so a defense that does much better against them than against gradient
attacks is fine, and one that does much *worse* has obfuscated gradients (paper 004 §4.2).
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from ..errors import AdvbenchError
from ..norms import Norm
from ..registry import register_attack
from .base import AttackTarget, MinimumNormAttack
from .gradient import PGD
from .zoo_attack import common_random_numbers


class _EstimateVectorJacobian(torch.autograd.Function):
    """Forward: model(x) without autograd. Backward: the vector-Jacobian product v^T J estimated
    by antithetic Gaussian sampling, E[(v.f(x + s u) - v.f(x - s u)) u] / 2s (NES), with the
    same model randomness for both probes (common random numbers)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, model: nn.Module, samples: int, sigma: float) -> torch.Tensor:  # type: ignore[override]
        ctx.model, ctx.samples, ctx.sigma = model, samples, sigma
        ctx.save_for_backward(x)
        with torch.no_grad():
            return model(x)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        estimate = torch.zeros_like(x)
        with torch.no_grad():
            for _ in range(ctx.samples):
                u = torch.randn_like(x)
                plus, minus = common_random_numbers(ctx.model, x + ctx.sigma * u, x - ctx.sigma * u)
                change = ((plus - minus) * grad_output).sum(1)       # v.f(x + su) - v.f(x - su), per sample
                estimate += change.view(-1, *([1] * (x.dim() - 1))) * u
        return estimate / (2 * ctx.sigma * ctx.samples), None, None, None


class EstimatedGradientModel(nn.Module):
    """`model` whose input gradients are finite-difference estimates (2 * samples queries per
    backward pass), so any gradient attack becomes a black-box attack on its decisions."""

    def __init__(self, model: nn.Module, samples: int, sigma: float) -> None:
        super().__init__()
        self.model, self.samples, self.sigma = model, samples, sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _EstimateVectorJacobian.apply(x, self.model, self.samples, self.sigma)


@register_attack("pgd-est", norm="linf", description="Linf PGD on gradients estimated by finite differences (NES, "
                                                     "antithetic Gaussian samples) from the defense's decisions; "
                                                     "gradient-free")
@register_attack("pgd-est-l2", norm="l2", description="L2 PGD on gradients estimated by finite differences; "
                                                      "gradient-free")
class EstimatedPGD(PGD):
    fast_options = {"steps": 10, "samples": 10}
    gradient_based = False

    def __init__(self, *, norm: str = "linf", steps: int = 50, step_size: float = 0.0, rel_step_size: float = 2.5,
                 random_start: bool = True, restarts: int = 1, loss: str = "margin", step_rule: str = "sign",
                 samples: int = 50, sigma: float = 0.001) -> None:
        super().__init__(norm=norm, steps=steps, step_size=step_size, rel_step_size=rel_step_size, random_start=random_start,
                         restarts=restarts, loss=loss, step_rule=step_rule)
        if samples < 1 or not sigma > 0:
            raise AdvbenchError(f"{type(self).__name__}: samples must be at least 1 and sigma positive")
        self.samples, self.sigma = samples, sigma

    def run(self, target: AttackTarget, x: torch.Tensor, y: torch.Tensor, *, epsilon: float) -> torch.Tensor:
        estimated = EstimatedGradientModel(target.decision_model, self.samples, self.sigma)
        # the defense's own attack loss is kept ("auto"): it is a function of logits, not of gradients
        blind = AttackTarget(estimated, target.decision_model, target.bounds, target.num_classes, loss=target.loss)
        return super().run(blind, x, y, epsilon=epsilon)


def other_class_starts(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each sample, a batch member the model assigns to another class than y (paper 004:
    the boundary attack starts from "a random sample classified as a different class");
    returns the starting points and which samples have one."""
    with torch.no_grad():
        predicted = model(x).argmax(1)
    starts, found = x.clone(), torch.zeros(len(x), dtype=torch.bool, device=x.device)
    generator = torch.Generator().manual_seed(0)
    for i in range(len(x)):
        candidates = (predicted != y[i]).nonzero().flatten()
        if len(candidates):
            pick = candidates[torch.randint(len(candidates), (1,), generator=generator).item()]
            starts[i], found[i] = x[pick], True
    return starts, found


@register_attack("boundary", description="boundary attack (Brendel et al. 2018), decision-based minimum L2, "
                                          "via foolbox; starts from a batch member of another class")
class Boundary(MinimumNormAttack):
    fast_options = {"steps": 300}
    norm = Norm.L2
    gradient_based = False

    def __init__(self, *, steps: int = 5000, spherical_step: float = 0.01, source_step: float = 0.01,
                 step_adaptation: float = 1.5) -> None:
        if steps < 1:
            raise AdvbenchError("boundary: steps must be at least 1")
        self.steps, self.spherical_step, self.source_step = steps, spherical_step, source_step
        self.step_adaptation = step_adaptation

    def run(self, target: AttackTarget, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        import foolbox as fb

        starts, found = other_class_starts(target.decision_model, x, y)
        result = x.clone()
        if not found.any():
            return result  # nothing to start from: no adversarial found (the runner records failures)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = fb.PyTorchModel(target.decision_model, bounds=target.bounds, device=x.device)
            attack = fb.attacks.BoundaryAttack(steps=self.steps, spherical_step=self.spherical_step,
                                               source_step=self.source_step, step_adaptation=self.step_adaptation)
            _, clipped, _ = attack(model, x[found], y[found], epsilons=None, starting_points=starts[found])
        clipped = clipped.detach()
        ok = torch.isfinite(clipped.flatten(1)).all(dim=1)
        result[found.nonzero().flatten()[ok]] = clipped[ok]
        return result
