"""Targeted examples (paper 000 Fig. 4): push inputs of other classes towards each class t.

For a GAT model the attack raises detector t's logit (the generative classifier's class-t
score); for any other classifier, its logit t. Seeing which perturbations look like
class t is the paper's evidence that GAT's detectors learned class-conditional features.
"""

from __future__ import annotations

import torch
from torch import nn

from ..attacks.pgd import pgd
from ..errors import AdvbenchError
from ..norms import Norm


def logit_of(target_class: int):
    def loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return logits[:, target_class]

    return loss


def targeted_examples(model: nn.Module, x: torch.Tensor, target_class: int, *, eps: float, norm: Norm, steps: int,
                      bounds: tuple[float, float], step_rule: str = "adam") -> torch.Tensor:
    """Inputs moved within the eps-ball to maximise `model`'s logit `target_class`."""
    labels = torch.full((len(x),), target_class, dtype=torch.long, device=x.device)
    return pgd(model, x, labels, eps=eps, norm=norm, steps=steps, step_size=2.5 * eps / steps,
               loss_fn=logit_of(target_class), bounds=bounds, random_init=False, step_rule=step_rule,
               prefer_misclassified=False)


def targeted_grid(models: dict[str, nn.Module], x: torch.Tensor, y: torch.Tensor, num_classes: int, *, per_class: int,
                  eps: float, norm: Norm, steps: int, bounds: tuple[float, float],
                  seed: int = 0) -> tuple[torch.Tensor, list[str]]:
    """Images (rows = target classes, columns = clean then each model's perturbed version of
    `per_class` inputs from other classes) and the column titles."""
    if steps < 1 or per_class < 1:
        raise AdvbenchError("steps and per-class must be at least 1")
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for t in range(num_classes):
        others = torch.nonzero(y != t).squeeze(1)
        chosen = x[others[torch.randperm(len(others), generator=generator)[:per_class]]]
        row = [chosen]
        for model in models.values():
            row.append(targeted_examples(model, chosen, t, eps=eps, norm=norm, steps=steps, bounds=bounds))
        rows.append(torch.stack(row, dim=1))  # (per_class, 1 + models, C, H, W)
    titles = ["clean", *models]
    return torch.stack(rows), titles  # (K, per_class, 1 + models, C, H, W)


def default_models(zoo_dir, dataset: str) -> tuple[str, ...]:
    """gat, and pgd-at beside it when the zoo has one for `dataset` (paper 000 Fig. 4)."""
    from pathlib import Path

    from ..zoo import default_name, default_zoo_dir

    zoo_path = Path(zoo_dir or default_zoo_dir())
    return ("gat",) + (("pgd-at",) if (zoo_path / f"{default_name('pgd-at', dataset)}.pt").exists() else ())
