"""Adversarial training: `fgsm-at` (Goodfellow et al. 2015) and `pgd-at`/`madry` (Madry et al. 2018).

Both train the same per-shape classifier as `cnn` on a mix of clean and adversarial
inputs crafted against the current model by our PGD engine. Epsilon, steps and step
size default by input shape (the MNIST challenge settings for 28x28) and the resolved
values are what the zoo card records.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks.losses import cross_entropy
from ..attacks.pgd import pgd
from ..data import DataInfo, Dataset
from ..errors import AdvbenchError
from ..norms import parse_norm
from ..progress import Observer
from ..registry import register_defense
from .cnn import CNN
from .training import CheckpointPlace, train_classifier

# (height, width) -> norm -> (eps, steps, step size); step size 0 means 2.5 * eps / steps
SHAPE_DEFAULTS: dict[tuple[int, int], dict[str, tuple[float, int, float]]] = {
    (28, 28): {"linf": (0.3, 40, 0.01), "l2": (2.0, 40, 0.0)},   # MNIST challenge (Linf)
    (8, 8): {"linf": (0.1, 10, 0.0), "l2": (0.5, 10, 0.0)},      # digits: the same budget relative to range
    (32, 32): {"linf": (8 / 255, 7, 2 / 255), "l2": (0.5, 7, 0.0)},  # Madry CIFAR-10
}
FALLBACK = {"linf": (8 / 255, 7, 0.0), "l2": (0.5, 7, 0.0)}
QUICK_STEPS = 5


def shape_defaults(info: DataInfo, norm: str) -> tuple[float, int, float]:
    return SHAPE_DEFAULTS.get(tuple(info.input_shape[1:]), FALLBACK)[norm]


@dataclass(frozen=True)
class PGDATConfig:
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    norm: str = "linf"
    eps: float = 0.0         # 0: by input shape
    steps: int = 0           # 0: by input shape
    step_size: float = 0.0   # 0: by input shape, else 2.5 * eps / steps
    random_start: bool = True
    mix: float = 0.0         # weight of the clean loss; Madry et al. train on adversarial inputs only
    quick: bool = False      # CPU preset: at most 5 PGD steps and 10 epochs


@dataclass(frozen=True)
class FGSMATConfig:
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    norm: str = "linf"
    eps: float = 0.0         # 0: by input shape
    mix: float = 0.5         # weight of the clean loss (Goodfellow et al. use 0.5)


def _check(config) -> None:
    parse_norm(config.norm)
    if not 0.0 <= config.mix <= 1.0:
        raise AdvbenchError(f"mix must be between 0 and 1, got {config.mix}")
    if config.eps < 0:
        raise AdvbenchError(f"eps must not be negative, got {config.eps}")


class _AdversariallyTrained(CNN):
    """The `cnn` architecture trained on adversarial inputs; subclasses say how to craft them."""

    def adversarial(self, x: torch.Tensor, y: torch.Tensor, config, bounds: tuple[float, float]) -> torch.Tensor:
        """Training inputs crafted against the current model."""
        raise NotImplementedError

    def fit(self, data: Dataset, config, *, seed: int, device: torch.device, observer: Observer,
            checkpoints: CheckpointPlace | None = None) -> list[float]:
        bounds = data.info.bounds

        def batch_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            model.eval()  # craft against inference behaviour (batch norm statistics frozen)
            x_adv = self.adversarial(x, y, config, bounds)
            model.train()
            adv = F.cross_entropy(model(x_adv), y)
            return adv if config.mix == 0 else config.mix * F.cross_entropy(model(x), y) + (1 - config.mix) * adv

        return train_classifier(self.net, data.train_x, data.train_y, epochs=config.epochs,
                                batch_size=config.batch_size, lr=config.lr, weight_decay=config.weight_decay,
                                seed=seed, device=device, observer=observer, batch_loss=batch_loss,
                                checkpoints=checkpoints)


@register_defense("pgd-at", description="Madry et al. PGD adversarial training (--norm, --eps, --steps, --step-size, --quick)")
@register_defense("madry", description="alias of pgd-at")
class PGDAdversarialTraining(_AdversariallyTrained):
    """PGD adversarial training with random start (Madry et al. 2018)."""

    Config = PGDATConfig

    @classmethod
    def resolve_config(cls, config: PGDATConfig, info: DataInfo) -> PGDATConfig:
        _check(config)
        norm = parse_norm(config.norm).value
        default_eps, default_steps, default_step = shape_defaults(info, norm)
        eps, steps, epochs = config.eps or default_eps, config.steps or default_steps, config.epochs
        if config.quick:
            steps, epochs = min(steps, QUICK_STEPS), min(epochs, 10)
        if steps < 1:
            raise AdvbenchError("steps must be at least 1")
        if config.step_size:
            step = config.step_size
        elif (eps, steps) == (default_eps, default_steps) and default_step:
            step = default_step  # the published setting, e.g. 0.01 for the MNIST challenge
        else:
            step = 2.5 * eps / steps
        return dataclasses.replace(config, norm=norm, eps=eps, steps=steps, step_size=step, epochs=epochs)

    def adversarial(self, x: torch.Tensor, y: torch.Tensor, config: PGDATConfig,
                    bounds: tuple[float, float]) -> torch.Tensor:
        return pgd(self.net, x, y, eps=config.eps, norm=parse_norm(config.norm), steps=config.steps,
                   step_size=config.step_size, loss_fn=cross_entropy, bounds=bounds,
                   random_init=config.random_start)


@register_defense("fgsm-at", description="FGSM/FGM adversarial training, mixing clean and one-step adversarial inputs")
class FGSMAdversarialTraining(_AdversariallyTrained):
    """One-step adversarial training (Goodfellow et al. 2015): --norm linf (FGSM) or l2 (FGM), --eps, --mix."""

    Config = FGSMATConfig

    @classmethod
    def resolve_config(cls, config: FGSMATConfig, info: DataInfo) -> FGSMATConfig:
        _check(config)
        norm = parse_norm(config.norm).value
        return dataclasses.replace(config, norm=norm, eps=config.eps or shape_defaults(info, norm)[0])

    def adversarial(self, x: torch.Tensor, y: torch.Tensor, config: FGSMATConfig,
                    bounds: tuple[float, float]) -> torch.Tensor:
        return pgd(self.net, x, y, eps=config.eps, norm=parse_norm(config.norm), steps=1, step_size=config.eps,
                   loss_fn=cross_entropy, bounds=bounds, random_init=False)
