"""The supervised training loop shared by classifier defenses.

Adversarial-training defenses reuse it by passing `batch_loss`, which computes each
batch's training loss (e.g. on a mix of clean and adversarial inputs).
"""

from __future__ import annotations

import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..progress import Observer

BatchLoss = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def clean_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(model(x), y)


def train_classifier(
    model: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float = 0.0,
    seed: int = 0,
    device: torch.device = torch.device("cpu"),
    observer: Observer | None = None,
    batch_loss: BatchLoss = clean_loss,
    after_step: Callable[[], None] | None = None,
) -> list[float]:
    """Adam on `batch_loss` (cross-entropy by default); returns the wall seconds of each
    epoch (zoo cards report them)."""
    observer = observer or Observer()
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    epoch_seconds: list[float] = []
    n = len(labels)
    with observer.task("training", epochs) as advance:
        for epoch in range(epochs):
            start = time.perf_counter()
            model.train()
            total_loss, seen = 0.0, 0
            for batch in torch.randperm(n, generator=generator).split(batch_size):
                x, y = inputs[batch].to(device), labels[batch].to(device)
                loss = batch_loss(model, x, y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if after_step is not None:
                    after_step()
                total_loss += loss.item() * len(y)
                seen += len(y)
            model.eval()
            epoch_seconds.append(time.perf_counter() - start)
            observer.message(f"epoch {epoch + 1}/{epochs}: loss {total_loss / seen:.4f}")
            advance(1)
    return epoch_seconds


@torch.no_grad()
def accuracy(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, *, batch_size: int = 512,
             device: torch.device = torch.device("cpu")) -> float:
    model.eval()
    correct = 0
    predict = getattr(model, "predict", None)
    for start in range(0, len(labels), batch_size):
        x = inputs[start:start + batch_size].to(device)
        pred = predict(x).labels if predict else model(x).argmax(1)
        correct += (pred.cpu() == labels[start:start + batch_size]).sum().item()
    return correct / max(len(labels), 1)
