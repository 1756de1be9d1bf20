"""Logit-based detection (paper 002 §III.3) for any classifier: `DEFENSE+detect[=FPR]`.

Reject x when its predicted class's logit is unusually low: logit_c(x) < delta_c with
delta_c = mu_c + alpha * sigma_c, where mu_c, sigma_c are the mean and standard deviation
of logit c over correctly classified training inputs of class c, and alpha is chosen so
that a fraction FPR (default 5%) of those training inputs is rejected. For GFZ/DFZ the
logit is the estimate of log p(x, c), which makes this the paper's detector; for a cnn it
is the same rule on its logits, for the DFZ-vs-GFZ-vs-CNN comparison.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import AdvbenchError
from .base import Defense

CALIBRATION_SAMPLES = 2000


def standardized_logits(logits: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """(logit of the predicted class - mu_c) / sigma_c per input."""
    predicted = logits.argmax(1)
    return (logits.gather(1, predicted[:, None]).squeeze(1) - mean[predicted]) / std[predicted]


class LogitDetection(Defense):
    """Wraps a classifier: same logits, gradients and attack loss, plus a reject score."""

    description = "logit-based detection on any classifier (paper 002 §III.3)"

    def __init__(self, base: Defense, num_classes: int) -> None:
        super().__init__()
        self.base = base
        self.stochastic = base.stochastic
        self.eot_samples = base.eot_samples
        self.eot_in_one_batch = base.eot_in_one_batch
        self.card = base.card
        self.register_buffer("class_mean", torch.zeros(num_classes))
        self.register_buffer("class_std", torch.ones(num_classes))
        self.register_buffer("alpha", torch.zeros(()))

    @torch.no_grad()
    def calibrate(self, inputs: torch.Tensor, labels: torch.Tensor, false_positive_rate: float,
                  batch_size: int = 256) -> float:
        """Fit mu_c, sigma_c and alpha on training inputs; returns the achieved training FPR."""
        device = self.class_mean.device
        logits = torch.cat([self.base.predict(inputs[i:i + batch_size].to(device)).logits
                            for i in range(0, len(inputs), batch_size)])
        labels = labels.to(device)
        correct = logits.argmax(1) == labels
        for c in range(len(self.class_mean)):
            own = logits[correct & (labels == c), c]
            if len(own) < 2:
                raise AdvbenchError(f"logit detection: fewer than 2 correctly classified training inputs of class {c}")
            self.class_mean[c], self.class_std[c] = own.mean(), own.std().clamp_min(1e-6)
        scores = standardized_logits(logits[correct], self.class_mean, self.class_std)
        self.alpha.fill_(torch.quantile(scores, false_positive_rate).item())
        self.reject_threshold = -self.alpha.item()
        return (scores < self.alpha).float().mean().item()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x)

    def reject_score(self, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """-(standardized logit of the predicted class): higher = less like clean training data."""
        return -standardized_logits(logits, self.class_mean, self.class_std)

    def gradient_model(self) -> nn.Module:
        return self.base.gradient_model()

    def attack_loss(self):
        return self.base.attack_loss()

    def attack_surfaces(self) -> dict[str, nn.Module]:
        return self.base.attack_surfaces()

    def certified_radius(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | None:
        return self.base.certified_radius(x, labels)


def with_logit_detection(model: Defense, train_x: torch.Tensor, train_y: torch.Tensor, num_classes: int,
                         false_positive_rate: float, seed: int = 0) -> LogitDetection:
    """`model` wrapped and calibrated on at most CALIBRATION_SAMPLES seeded training inputs."""
    generator = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(train_y), generator=generator)[:CALIBRATION_SAMPLES]
    detector = LogitDetection(model, num_classes).to(next(model.buffers(), next(model.parameters())).device)
    detector.calibrate(train_x[pick], train_y[pick], false_positive_rate)
    return detector.eval()
