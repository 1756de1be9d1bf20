"""Per-sample losses that gradient attacks maximise."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import AdvbenchError
from .base import Loss


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, labels, reduction="none")


def margin(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Carlini-Wagner margin: best wrong logit minus the true logit (positive = misclassified)."""
    true = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.scatter(1, labels[:, None], float("-inf"))
    return others.amax(dim=1) - true


def max_other(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The largest wrong-class logit: paper 001 Eq. 10 (the detectors attack) on any logits."""
    return logits.scatter(1, labels[:, None], float("-inf")).amax(dim=1)


LOSSES: dict[str, Loss] = {"ce": cross_entropy, "margin": margin, "max-other": max_other}


def pick_loss(name: str, defense_loss: Loss | None) -> tuple[Loss, bool]:
    """The loss to maximise and whether misclassification is the goal.

    `auto` uses the defense's own attack loss when it provides one (its success is then
    judged by the loss alone), else cross-entropy.
    """
    if name == "auto" and defense_loss is not None:
        return defense_loss, False
    try:
        return LOSSES["ce" if name == "auto" else name], True
    except KeyError:
        raise AdvbenchError(f"unknown attack loss {name!r}: use auto, {', '.join(LOSSES)}") from None


def _sorted_logits(logits: torch.Tensor) -> torch.Tensor:
    if logits.shape[1] < 4:
        raise AdvbenchError(f"the DLR loss needs at least 4 classes (got {logits.shape[1]})")
    return logits.sort(dim=1).values


def dlr(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Difference of logits ratio (Croce & Hein 2020): the margin over the gap between the first
    and third largest logits, so that rescaling the logits (masking by scale) changes nothing."""
    ordered = _sorted_logits(logits)
    return margin(logits, labels) / (ordered[:, -1] - ordered[:, -3] + 1e-12)


def targeted_dlr(logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Targeted DLR: (z_t - z_y) / (z_pi1 - (z_pi3 + z_pi4) / 2); positive once t beats y."""
    ordered = _sorted_logits(logits)
    gap = logits.gather(1, targets[:, None]).squeeze(1) - logits.gather(1, labels[:, None]).squeeze(1)
    return gap / (ordered[:, -1] - 0.5 * (ordered[:, -3] + ordered[:, -4]) + 1e-12)


LOSSES["dlr"] = dlr
