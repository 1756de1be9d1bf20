"""The supervised training loop shared by classifier defenses.

Adversarial-training defenses reuse it by passing `batch_loss`, which computes each
batch's training loss (e.g. on a mix of clean and adversarial inputs).
"""

from __future__ import annotations

import io
import re
import time
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..progress import Observer

BatchLoss = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class CheckpointPlace:
    """Where a training run keeps its per-epoch checkpoints, and which training they belong to."""

    directory: Path
    identity: str  # a hash of defense, dataset, hyperparameters and seed


_PLACE: ContextVar[CheckpointPlace | None] = ContextVar("advbench_training_checkpoints", default=None)


@contextmanager
def checkpoints_in(directory: Path, identity: str) -> Iterator[None]:
    """Checkpoint every `EpochLoop` run inside this block to `directory` (zoo.train uses it)."""
    token = _PLACE.set(CheckpointPlace(Path(directory), identity))
    try:
        yield
    finally:
        _PLACE.reset(token)


class EpochLoop:
    """The epoch loop every defense's `fit` shares: a progress bar, wall seconds per epoch and,
    inside `checkpoints_in`, a checkpoint after every epoch of everything in `state` (modules,
    optimizers, torch generators, anything with state_dict/load_state_dict) plus the global
    torch RNG. A rerun of the same training resumes after the last finished epoch and gives
    the same weights as an uninterrupted run.

        loop = EpochLoop("training cnn", epochs, observer, model=net, optimizer=opt, generator=gen)
        for epoch in loop:
            ...one epoch...
            loop.report(f"loss {loss:.4f}")
        return loop.seconds
    """

    def __init__(self, description: str, epochs: int, observer: Observer, **state: Any) -> None:
        self.description, self.epochs, self.observer, self.state = description, epochs, observer, state
        self.seconds: list[float] = []
        self._summary = ""
        place = _PLACE.get()
        slug = re.sub(r"[^A-Za-z0-9]+", "-", description).strip("-") or "loop"
        self.path = place.directory / f"{slug}.pt" if place else None
        self.identity = place.identity if place else ""

    def report(self, summary: str) -> None:
        """The epoch's numbers, printed as "epoch i/n: summary" when it ends."""
        self._summary = summary

    def __iter__(self) -> Iterator[int]:
        first = self._resume()
        with self.observer.task(self.description, self.epochs) as advance:
            advance(first)
            for epoch in range(first, self.epochs):
                start = time.perf_counter()
                self._summary = ""
                yield epoch
                self.seconds.append(time.perf_counter() - start)
                self._save(epoch + 1)
                self.observer.message(f"epoch {epoch + 1}/{self.epochs}" + (f": {self._summary}" if self._summary else ""))
                advance(1)

    def _save(self, done: int) -> None:
        if self.path is None:
            return
        blob = {"identity": self.identity, "epochs_done": done, "seconds": self.seconds,
                "rng": torch.get_rng_state(), "state": {name: _state_of(obj) for name, obj in self.state.items()}}
        buffer = io.BytesIO()
        torch.save(blob, buffer)
        from ..store import atomic_write_bytes

        atomic_write_bytes(self.path, buffer.getvalue())

    def _resume(self) -> int:
        if self.path is None or not self.path.exists():
            return 0
        try:
            blob = torch.load(self.path, map_location="cpu", weights_only=False)
        except Exception:  # noqa: BLE001 - a damaged checkpoint only costs the epochs it held
            self.observer.message(f"warning: {self.path} is unreadable; {self.description} starts from epoch 1")
            return 0
        if blob.get("identity") != self.identity or set(blob.get("state", {})) != set(self.state):
            return 0
        for name, obj in self.state.items():
            _load_state(obj, blob["state"][name])
        torch.set_rng_state(blob["rng"])
        self.seconds = list(blob["seconds"])
        done = int(blob["epochs_done"])
        if done < self.epochs:
            self.observer.message(f"{self.description}: resuming after epoch {done}/{self.epochs} ({self.path})")
        return min(done, self.epochs)


class KeptValues:
    """Loop state that is not a module (e.g. the best validation scores so far), kept in the
    per-epoch checkpoint: read and write it through `values`."""

    def __init__(self, **values: Any) -> None:
        self.values = values

    def state_dict(self) -> dict[str, Any]:
        return dict(self.values)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.values.update(state)


def _state_of(obj: Any) -> Any:
    if isinstance(obj, torch.Generator):
        return obj.get_state()
    return obj.state_dict()


def _load_state(obj: Any, state: Any) -> None:
    if isinstance(obj, torch.Generator):
        obj.set_state(state)
    else:
        obj.load_state_dict(state)


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
    description: str = "training",
) -> list[float]:
    """Adam on `batch_loss` (cross-entropy by default); returns the wall seconds of each
    epoch (zoo cards report them)."""
    observer = observer or Observer()
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    n = len(labels)
    loop = EpochLoop(description, epochs, observer, model=model, optimizer=optimizer, generator=generator)
    for _ in loop:
        model.train()
        total_loss, seen = 0.0, 0
        for batch in torch.randperm(n, generator=generator).split(batch_size):
            x, y = inputs[batch].to(device), labels[batch].to(device)
            loss = batch_loss(model, x, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(y)
            seen += len(y)
        model.eval()
        loop.report(f"loss {total_loss / seen:.4f}")
    return loop.seconds


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
