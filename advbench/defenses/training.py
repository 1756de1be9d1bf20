"""The supervised training loop shared by classifier defenses.

Adversarial-training defenses reuse it by passing `batch_loss`, which computes each
batch's training loss (e.g. on a mix of clean and adversarial inputs).
"""

from __future__ import annotations

import io
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import AdvbenchError
from ..progress import Observer

BatchLoss = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class CheckpointPlace:
    """Where a training run keeps its per-epoch checkpoints, and which training they belong to."""

    directory: Path
    identity: str  # a hash of defense, dataset, hyperparameters and seed
    settings: dict[str, Any] | None = None  # what the identity hashes, to name what changed
    discard_other: bool = False  # a checkpoint of a training with other settings: refused, or discarded


class EpochLoop:
    """The epoch loop every defense's `fit` shares: a progress bar, wall seconds per epoch and,
    given `checkpoints` (zoo.train passes them to `fit`), a checkpoint after every epoch of
    everything in `state` (modules,
    optimizers, torch generators, anything with state_dict/load_state_dict) plus the global
    torch RNG. A rerun of the same training resumes after the last finished epoch and gives
    the same weights as an uninterrupted run.

        loop = EpochLoop("training cnn", epochs, observer, checkpoints, model=net, optimizer=opt, generator=gen)
        for epoch in loop:
            ...one epoch...
            loop.report(f"loss {loss:.4f}")
        return loop.seconds
    """

    def __init__(self, description: str, epochs: int, observer: Observer, checkpoints: CheckpointPlace | None = None,
                 **state: Any) -> None:
        self.description, self.epochs, self.observer, self.state = description, epochs, observer, state
        self.seconds: list[float] = []
        self._summary = ""
        place = checkpoints
        slug = re.sub(r"[^A-Za-z0-9]+", "-", description).strip("-") or "loop"
        self.path = place.directory / f"{slug}.pt" if place else None
        self.identity = place.identity if place else ""
        self.settings = (place.settings or {}) if place else {}
        self.discard_other = place.discard_other if place else False

    def report(self, summary: str) -> None:
        """The epoch's numbers, printed as "epoch i/n: summary" when it ends."""
        self._summary = summary

    def __iter__(self) -> Iterator[int]:
        first = self._resume()
        with self.observer.task(self.description, self.epochs, done_before=first) as advance:
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
        # only tensors, numbers, strings and containers: the file loads with weights_only=True
        blob = {"identity": self.identity, "settings": json.dumps(self.settings, sort_keys=True, default=str),
                "epochs_done": done, "seconds": self.seconds,
                "rng": torch.get_rng_state(), "state": {name: _state_of(obj) for name, obj in self.state.items()}}
        buffer = io.BytesIO()
        torch.save(blob, buffer)
        from ..store import atomic_write_bytes

        atomic_write_bytes(self.path, buffer.getvalue())

    def _resume(self) -> int:
        if self.path is None or not self.path.exists():
            return 0
        blob = read_training_checkpoint(self.path)
        if blob is None:
            self.observer.message(f"warning: training checkpoint {self.path} is unreadable or holds more than "
                                  f"tensors and numbers (never unpickled); {self.description} starts from epoch 1 "
                                  "and overwrites it")
            return 0
        if blob.get("identity") != self.identity or set(blob.get("state", {})) != set(self.state):
            self._other_training(blob)
            return 0
        for name, obj in self.state.items():
            _load_state(obj, blob["state"][name])
        torch.set_rng_state(blob["rng"])
        self.seconds = list(blob["seconds"])
        done = int(blob["epochs_done"])
        if done < self.epochs:
            self.observer.message(f"{self.description}: resuming after epoch {done}/{self.epochs} ({self.path})")
        return min(done, self.epochs)

    def _other_training(self, blob: dict[str, Any]) -> None:
        """A checkpoint of an interrupted training with other settings: its epochs are kept
        unless the caller said to discard them, and either way the user hears which settings differ."""
        done = blob.get("epochs_done", "?")
        differing = settings_difference(_settings_of(blob), self.settings)
        what = f"{done} finished epoch(s) of a training with other settings ({differing})"
        if not self.discard_other:
            raise AdvbenchError(f"{self.path} holds {what}; rerun that training to continue it, or discard it "
                                "with `advbench train ... --force`")
        self.observer.message(f"warning: discarding {what} in {self.path}")


def read_training_checkpoint(path: Path) -> dict[str, Any] | None:
    """A per-epoch training checkpoint, loaded without unpickling code; None when unreadable."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - damaged, foreign or pickled-code files are all refused alike
        return None
    return blob if isinstance(blob, dict) and {"state", "rng", "epochs_done"} <= set(blob) else None


def _settings_of(blob: dict[str, Any]) -> dict[str, Any]:
    try:
        settings = json.loads(blob.get("settings") or "{}")
    except (TypeError, ValueError):
        return {}
    return settings if isinstance(settings, dict) else {}


def settings_difference(earlier: dict[str, Any], now: dict[str, Any]) -> str:
    """"lr 0.001 there, 0.01 now" for every setting that differs (nested hyperparameters flattened)."""
    def flat(settings: dict[str, Any]) -> dict[str, str]:
        out = {}
        for key, value in settings.items():
            if isinstance(value, dict):
                out.update({k: json.dumps(v, default=str) for k, v in value.items()})
            else:
                out[key] = json.dumps(value, default=str)
        return out

    before, after = flat(earlier), flat(now)
    keys = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    if not keys:
        return "settings not recorded" if not earlier else "another code version"
    return ", ".join(f"{k} {before.get(k, '-')} there, {after.get(k, '-')} now" for k in keys[:4]) + (
        f" and {len(keys) - 4} more" if len(keys) > 4 else "")


class KeptValues:
    """Loop state that is not a module (e.g. the best validation scores so far), kept in the
    per-epoch checkpoint: read and write it through `values`."""

    def __init__(self, **values: Any) -> None:
        self.values = values

    def state_dict(self) -> dict[str, Any]:
        # numpy arrays travel as tensors: checkpoints load with weights_only=True
        return {k: torch.from_numpy(v.copy()) if isinstance(v, np.ndarray) else v for k, v in self.values.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.values.update({k: v.numpy() if isinstance(v, torch.Tensor) and isinstance(self.values.get(k), np.ndarray)
                            else v for k, v in state.items()})


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
    checkpoints: CheckpointPlace | None = None,
) -> list[float]:
    """Adam on `batch_loss` (cross-entropy by default); returns the wall seconds of each
    epoch (zoo cards report them)."""
    observer = observer or Observer()
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    n = len(labels)
    loop = EpochLoop(description, epochs, observer, checkpoints, model=model, optimizer=optimizer, generator=generator)
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
