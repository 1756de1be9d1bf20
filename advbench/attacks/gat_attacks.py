"""Adaptive attacks on GAT's integrated detection/classification (paper 001 Eq. 9-13).

They need the defense's classifier f and detectors H (its `attack_surfaces`), and run
on our PGD engine (Adam or sign/normalized steps, restarts). Each maximises the negative
of the paper's loss L; success is judged afterwards by the runner from the defense's
own predictions and reject scores, so the engine keeps the highest-loss point.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from ..errors import AdvbenchError
from ..norms import parse_norm
from ..registry import register_attack
from .base import AttackTarget, Capability, FixedEpsilonAttack
from .losses import margin, max_other
from .pgd import STEP_RULES, pgd


def classifier_objective(f: torch.Tensor, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """-Eq. 9: max_{i!=y} z_f,i - z_f,y (attack the classifier only)."""
    return margin(f, y)


def detectors_objective(f: torch.Tensor, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """-Eq. 10: max_{i!=y} z_H,i (make some wrong-class detector fire)."""
    return max_other(h, y)


def combined_objective(f: torch.Tensor, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """-Eq. 12 on the K+1-logit surrogate g of Eq. 11:
    z_g = [z_f, (-max_{j!=y} z_H,j + 1) * max_j z_f,j]; maximise max_{i!=y} z_f,i - max_i z_g,i."""
    extra = (-max_other(h, y) + 1) * f.amax(dim=1)
    g = torch.cat([f, extra[:, None]], dim=1)
    return max_other(f, y) - g.amax(dim=1)


def switch_objective(f: torch.Tensor, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """-Eq. 13: attack the classifier while it is still right, then the detectors."""
    right = f.gather(1, y[:, None]).squeeze(1) >= max_other(f, y)
    return torch.where(right, margin(f, y), max_other(h, y))


OBJECTIVES = {"classifier": classifier_objective, "detectors": detectors_objective,
              "combined": combined_objective, "switch": switch_objective}


class _ClassifierAndDetectors(nn.Module):
    """[z_f, z_H] side by side, so one forward pass feeds the combined objectives."""

    def __init__(self, classifier: nn.Module, detectors: nn.Module) -> None:
        super().__init__()
        self.classifier, self.detectors = classifier, detectors

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.classifier(x), self.detectors(x)], dim=1)


@register_attack("gat-linf", norm="linf", description="PGD on a gat model with paper 001's objectives "
                                                      "(--opt objective=classifier|detectors|combined|switch)")
@register_attack("gat-l2", norm="l2", description="PGD on a gat model with paper 001's objectives, L2")
class GATPGD(FixedEpsilonAttack):
    """PGD on a GAT model with one of the paper 001 objectives (classifier, detectors, combined, switch)."""
    fast_options = {"steps": 20}
    derived_defaults: ClassVar[dict[str, str]] = {"step_size": "rel-step-size x eps / steps"}

    requires = Capability.GAT_SURFACES

    def __init__(self, *, norm: str = "linf", objective: str = "combined", steps: int = 100, step_size: float = 0.0,
                 rel_step_size: float = 2.5, random_start: bool = True, restarts: int = 1,
                 step_rule: str = "adam") -> None:
        if objective not in OBJECTIVES:
            raise AdvbenchError(f"gat attack objective must be one of {', '.join(OBJECTIVES)}")
        if step_rule not in STEP_RULES or steps < 1 or restarts < 1:
            raise AdvbenchError(f"gat attack: steps and restarts >= 1, step-rule one of {', '.join(STEP_RULES)}")
        self.norm = parse_norm(norm)
        self.objective, self.steps, self.step_size, self.rel_step_size = objective, steps, step_size, rel_step_size
        self.random_start, self.restarts, self.step_rule = random_start, restarts, step_rule

    def run(self, target: AttackTarget, x: torch.Tensor, y: torch.Tensor, *, epsilon: float) -> torch.Tensor:
        surfaces = target.surfaces
        if not self.requires.offered_by(target):  # called directly, past the runner's `unsupported` check
            raise AdvbenchError(f"gat attacks need {self.requires.needs}")
        model = _ClassifierAndDetectors(surfaces["classifier"], surfaces["detectors"])
        k = target.num_classes
        objective = OBJECTIVES[self.objective]

        def loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            return objective(logits[:, :k], logits[:, k:], labels)

        return pgd(model, x, y, eps=epsilon, norm=self.norm, steps=self.steps,
                   step_size=self.step_size or self.rel_step_size * epsilon / self.steps, loss_fn=loss,
                   bounds=target.bounds, random_init=self.random_start, restarts=self.restarts,
                   step_rule=self.step_rule, prefer_misclassified=False)
