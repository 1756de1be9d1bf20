"""What an attack maximises and how it knows it has succeeded, for every kind of defense.

A plain classifier is beaten when it misclassifies. A defense with a reject option is
beaten only when it misclassifies AND accepts the input (reject score at or below its
threshold), exactly as the metrics judge it. The reject-aware objective generalises
paper 001's switch rule (Eq. 13): it maximises min(m, T - s), where m is a loss that
turns positive at misclassification (margin or DLR) and s the reject score, so the
gradient always works on whichever of the two conditions is still violated, and the
objective is positive exactly when both hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from .base import AttackTarget
from .losses import LOSSES, margin, pick_loss, targeted_dlr

Tensor = torch.Tensor
Decided = Callable[[Tensor, Tensor], Tensor]  # (points, labels) -> beaten, by the defense's real decision


@dataclass(frozen=True)
class Objective:
    """`model(x)` gives outputs whose first `classes` columns are logits (then, reject-aware,
    the reject score); `loss(out, y)` is maximised; `success(out, y)` says who is beaten."""

    model: nn.Module
    loss: Callable[[Tensor, Tensor], Tensor]
    success: Callable[[Tensor, Tensor], Tensor]
    classes: int
    threshold: float | None = None  # the reject threshold, for reject-aware objectives
    # whether success is the goal (a beaten point beats any other); False for a defense's own
    # attack loss, whose best point is judged by the loss alone
    success_first: bool = True
    targets: Tensor | None = None  # per sample, the class a targeted loss pushes towards (`retarget`)

    @property
    def reject_aware(self) -> bool:
        return self.threshold is not None

    def logits(self, out: Tensor) -> Tensor:
        return out[:, :self.classes]

    def retarget(self, targets: Tensor) -> "Objective":
        """The same objective with the targeted DLR loss towards `targets` (APGD-T, FAB-T)."""
        k = self.classes

        def loss(out: Tensor, y: Tensor) -> Tensor:
            towards = targeted_dlr(out[:, :k], y, targets)
            return towards if self.threshold is None else torch.minimum(towards, self.threshold - out[:, k])

        return Objective(self.model, loss, self.success, k, self.threshold, self.success_first, targets)

    def for_rows(self, rows: Tensor) -> "Objective":
        """The objective of some rows of the batch (a targeted loss keeps each row's own target)."""
        return self if self.targets is None else self.retarget(self.targets[rows])


def misclassified(out: Tensor, y: Tensor, classes: int) -> Tensor:
    return out[:, :classes].argmax(1) != y


def build_objective(target: AttackTarget, loss: str = "ce", *, reject_aware: bool = True,
                    decision: bool = False) -> Objective:
    """The objective of an attack on `target`: on its gradient model (or, `decision=True`, its
    real decision, for score-based attacks), reject-aware when the defense has a reject option
    and `reject_aware` is on. `loss` names a loss of `losses.LOSSES` or `auto` (the defense's
    own loss, else cross-entropy); a reject-aware objective uses the margin in place of
    cross-entropy, which does not change sign at the decision boundary."""
    k = target.num_classes
    if reject_aware and target.has_reject_option:
        model = target.joint_decision_model if decision else target.joint_gradient_model
        threshold = float(target.reject_threshold)  # type: ignore[arg-type]
        base = margin if loss in ("ce", "auto", "margin") else LOSSES[loss]

        def reject_loss(out: Tensor, y: Tensor) -> Tensor:
            return torch.minimum(base(out[:, :k], y), threshold - out[:, k])

        def beaten(out: Tensor, y: Tensor) -> Tensor:
            return misclassified(out, y, k) & (out[:, k] <= threshold)

        return Objective(model, reject_loss, beaten, k, threshold)
    model = target.decision_model if decision else target.gradient_model
    loss_fn, success_first = pick_loss(loss, target.loss)
    return Objective(model, loss_fn, lambda out, y: misclassified(out, y, k), k, success_first=success_first)


def real_decision(target: AttackTarget, loss: str, reject_aware: bool) -> Decided | None:
    """Success judged by the defense's real decision (not its surrogate), so that a sample leaves
    an attack only once the defense itself is beaten; None for a stochastic defense, whose one
    lucky draw must not end the attack on a sample, and for a transfer source, whose decision is
    not the judge's (an example that barely beats the source rarely transfers)."""
    if target.stochastic or target.transfer:
        return None
    judge = build_objective(target, loss, reject_aware=reject_aware, decision=True)
    return lambda points, labels: judge.success(judge.model(points), labels)
