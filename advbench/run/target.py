"""The attacker's view of a defense: its gradient and decision models behind query
counters, reject-aware joint models, EOT averaging, and the clean input gradient."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..attacks import AttackTarget
from ..attacks.losses import pick_loss
from ..defenses.base import Defense, ExpectationOverTransformation
from ..norms import Norm


class QueryCounter(nn.Module):
    """Counts the inputs a model is evaluated on, so records can report queries per sample."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.count = 0
        self.on_count: Callable[[int], None] | None = None  # progress within a batch
        self.train(model.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.count += len(x)
        if self.on_count is not None:
            self.on_count(len(x))
        return self.model(x)


class WithRejectScore(nn.Module):
    """[logits | reject score] in one pass: what reject-aware objectives differentiate (on
    the gradient model) or read (on the real decision)."""

    def __init__(self, defense: Defense, model: nn.Module) -> None:
        super().__init__()
        self.defense, self.model = defense, model
        self.train(model.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        return torch.cat([logits, self.defense.reject_score(x, logits)[:, None]], dim=1)


def attack_target(defense: Defense, eot: int, bounds: tuple[float, float], num_classes: int,
                  load_model: Callable[[str], nn.Module] | None = None,
                  dataset: str = "", transfer: bool = False) -> tuple[AttackTarget, list[QueryCounter]]:
    """The attack's view of a defense, with counters inside any EOT averaging so that
    queries count every model evaluation (surfaces included)."""
    counters = [QueryCounter(defense.gradient_model()), QueryCounter(defense)]
    surfaces = {name: QueryCounter(module) for name, module in defense.attack_surfaces().items()}
    has_reject = defense.reject_threshold is not None
    models: list[nn.Module] = list(counters)
    if has_reject:
        models += [WithRejectScore(defense, counter) for counter in counters]
    averaged = defense.stochastic and eot > 1
    if averaged:
        models = [ExpectationOverTransformation(m, eot, batched=defense.eot_in_one_batch) for m in models]

    def reject_score(x: torch.Tensor) -> torch.Tensor:
        return defense.predict(x).reject_score

    target = AttackTarget(models[0], models[1], bounds, num_classes, loss=defense.attack_loss(),
                          load_model=load_model, dataset=dataset, surfaces=dict(surfaces),
                          reject_score=reject_score if has_reject else None,
                          reject_threshold=defense.reject_threshold,
                          joint_gradient_model=models[2] if has_reject else None,
                          joint_decision_model=models[3] if has_reject else None,
                          eot=eot if averaged else 1, stochastic=defense.stochastic, transfer=transfer)
    return target, counters + list(surfaces.values())


class SharedCleanGradients:
    """A defense's clean gradient norms per batch of its samples, computed once and shared by all
    its gradient cells and by the time estimate (whose timed pass is the first batch's): the
    gradient at a clean input does not depend on the attack. Only when it cannot change between
    calls: a stochastic defense's is drawn per cell (seeded per batch), and a gradient model
    handed out fresh per call may carry state (warm starts) that its clean pass begins."""

    def __init__(self, defense: Defense) -> None:
        self.shared = not defense.stochastic and defense.gradient_model() is defense.gradient_model()
        self._norms: dict[tuple[int, int], torch.Tensor] = {}

    def __call__(self, target: AttackTarget, x: torch.Tensor, y: torch.Tensor, position: int) -> torch.Tensor:
        """The norms of the batch `x` whose first sample is at `position` of the defense's samples."""
        if not self.shared:
            return clean_gradient_norms(target, x, y)
        key = (position, len(x))
        if key not in self._norms:
            self._norms[key] = clean_gradient_norms(target, x, y)
        return self._norms[key]


def clean_gradient_norms(target: AttackTarget, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """L2 norm of the attack loss's input gradient at each clean input (dead-gradient check)."""
    loss_fn, _ = pick_loss("auto", target.loss)
    x = x.clone().requires_grad_(True)
    with torch.enable_grad():
        loss = loss_fn(target.gradient_model(x), y)
        (grad,) = torch.autograd.grad(loss.sum(), x, allow_unused=True)
    if grad is None:
        return torch.zeros(len(x))
    return Norm.L2.of(grad).detach().cpu()
