"""`cnn`: a standard-trained classifier, the undefended baseline of every paper."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data import DataInfo, Dataset
from ..progress import Observer
from ..registry import register_defense
from .base import TrainableDefense
from .networks import classifier_for_shape
from .training import CheckpointPlace, train_classifier


@dataclass(frozen=True)
class CNNConfig:
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0


@register_defense("cnn")
class CNN(TrainableDefense):
    """Standard-trained CNN; architecture by input shape (MNIST-challenge CNN for 28x28)."""

    description = "standard-trained CNN; architecture by input shape (MNIST-challenge CNN for 28x28)"
    Config = CNNConfig

    def __init__(self, info: DataInfo) -> None:
        super().__init__()
        self.net = classifier_for_shape(info.input_shape, info.num_classes)

    @classmethod
    def build(cls, info: DataInfo, config: CNNConfig) -> "CNN":
        return cls(info)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def fit(self, data: Dataset, config: CNNConfig, *, seed: int, device: torch.device, observer: Observer,
            checkpoints: CheckpointPlace | None = None) -> list[float]:
        return train_classifier(
            self.net, data.train_x, data.train_y, epochs=config.epochs, batch_size=config.batch_size,
            lr=config.lr, weight_decay=config.weight_decay, seed=seed, device=device, observer=observer,
            checkpoints=checkpoints,
        )
