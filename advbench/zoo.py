"""The model zoo: trained checkpoints with JSON cards, and how defenses are found.

`zoo/<name>.pt` holds the weights and the card; `zoo/<name>.json` is the same card
for people and tools. Loading checks the card against the dataset so a checkpoint
for other inputs fails with a clear message instead of a shape error.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import inspect
import io
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .data import DataInfo, Dataset
from .defenses.base import Defense, TrainableDefense
from .defenses.training import CheckpointPlace, accuracy
from .defenses.weights import load_state, load_tensors
from .errors import AdvbenchError
from .options import coerce_options
from .progress import Observer
from .registry import defenses
from .zoo_names import default_name
from .store import atomic_write_bytes, atomic_write_text, sha256_bytes

CHECKSUM_KEY = "checkpoint_sha256"
PARTIAL_DIR = ".partial"  # <zoo>/.partial/<entry>/: per-epoch checkpoints of a training not finished yet


@dataclass
class Card:
    """Everything needed to rebuild, trust and cite a checkpoint."""

    name: str
    defense: str
    dataset: str
    input_shape: list[int]
    num_classes: int
    hyperparameters: dict[str, Any]
    seed: int
    clean_accuracy: float
    train_seconds: float
    seconds_per_epoch: float
    norm: str | None = None
    eps: float | None = None
    advbench_version: str = __version__
    torch_version: str = str(torch.__version__)
    created: str = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))


def default_zoo_dir() -> Path:
    return Path(os.environ.get("ADVBENCH_ZOO", "zoo"))


def check_name(name: str) -> str:
    """Zoo names become file names: letters, digits and . _ + = - only."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+=-]*", name):
        raise AdvbenchError(f"zoo name {name!r} may only hold letters, digits and . _ + = -")
    return name


def train(
    defense_name: str, data: Dataset, *, options: dict[str, Any] | None = None, seed: int = 0,
    name: str | None = None, zoo_dir: Path | None = None, device: torch.device = torch.device("cpu"),
    observer: Observer | None = None, discard_partial: bool = False,
) -> Card:
    """Train a registered defense and write `<zoo>/<name>.pt` and `.json` atomically. An
    interrupted training of the entry continues; one with other settings is refused unless
    `discard_partial` (then dropped with a warning)."""
    observer = observer or Observer()
    cls = trainable_class(defense_name)
    config = cls.Config(**resolved_hyperparameters(defense_name, data.info, options))
    zoo_dir = Path(zoo_dir or default_zoo_dir())
    _ensure_writable(zoo_dir)
    torch.manual_seed(seed)
    model = cls.build(data.info, config).to(device)
    entry = check_name(name or default_name(defense_name, data.info.name))
    partial = zoo_dir / PARTIAL_DIR / entry
    identity = hashlib.sha256(json.dumps([defense_name, data.info.name, dataclasses.asdict(config), seed],
                                         sort_keys=True, default=str).encode()).hexdigest()
    settings = {"defense": defense_name, "dataset": data.info.name, "seed": seed,
                "hyperparameters": dataclasses.asdict(config)}
    start = time.perf_counter()
    # every epoch is kept; a rerun continues after the last one (a plugin whose fit takes no
    # `checkpoints` trains without them)
    place = CheckpointPlace(partial, identity, settings, discard_other=discard_partial)
    keeps = "checkpoints" in inspect.signature(model.fit).parameters
    epoch_seconds = model.fit(data, config, seed=seed, device=device, observer=observer,
                              **({"checkpoints": place} if keeps else {}))
    seconds = time.perf_counter() - start
    model.eval()
    broken = [k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if broken:
        raise AdvbenchError(f"training {defense_name} diverged: non-finite weights in {broken[0]} (and "
                            f"{len(broken) - 1} more); lower the learning rate. Nothing was written to the zoo")
    hyper = dataclasses.asdict(config)
    card = Card(
        name=entry, defense=defense_name, dataset=data.info.name,
        input_shape=list(data.info.input_shape), num_classes=data.info.num_classes, hyperparameters=hyper,
        seed=seed, clean_accuracy=accuracy(model, data.test_x, data.test_y, device=device),
        train_seconds=round(seconds, 3),
        seconds_per_epoch=round(sum(epoch_seconds) / max(len(epoch_seconds), 1), 4),
        norm=hyper.get("norm", cls.norm), eps=hyper.get("eps"),
    )
    save(model, card, zoo_dir)
    shutil.rmtree(partial, ignore_errors=True)
    return card


def trainable_class(defense_name: str) -> Any:
    """The registered class behind `defense_name`, refused in one line when advbench cannot train it."""
    cls = defenses.get(defense_name)
    if not (isinstance(cls, type) and issubclass(cls, TrainableDefense)):
        raise AdvbenchError(f"defense {defense_name!r} cannot be trained by advbench (it is not a TrainableDefense); "
                            "evaluate it with its weights: --weights FILE, or weights = \"FILE\" in a grid")
    return cls


def resolved_hyperparameters(defense_name: str, info: DataInfo, options: dict[str, Any] | None) -> dict[str, Any]:
    """The hyperparameters a training run would record in its card (defaults filled in)."""
    cls = trainable_class(defense_name)
    config = cls.Config(**coerce_options(cls.Config, options or {}, f"defense {defense_name}"))
    return dataclasses.asdict(cls.resolve_config(config, info))


def same_training(card: Card, defense_name: str, info: DataInfo, options: dict[str, Any] | None, seed: int) -> bool:
    """Whether `card` records exactly the training these settings would run (so it can be reused)."""
    return (card.defense, card.dataset, card.seed) == (defense_name, info.name, seed) and \
        card.hyperparameters == resolved_hyperparameters(defense_name, info, options)


def train_entry(defense_name: str, data: Dataset, *, options: dict[str, Any] | None = None, seed: int = 0,
                name: str | None = None, zoo_dir: Path | None = None, device: torch.device = torch.device("cpu"),
                observer: Observer | None = None, force: bool = False) -> tuple[Card, bool]:
    """`advbench train`: train into the zoo, unless an entry with exactly these settings exists
    (returned with `True`: reused). An entry with other settings needs `force`."""
    entry = check_name(name or default_name(defense_name, data.info.name))
    target = Path(zoo_dir or default_zoo_dir()) / f"{entry}.pt"
    resolved_hyperparameters(defense_name, data.info, options)  # bad options fail before anything else
    if target.exists() and not force:
        existing = read_card(entry, zoo_dir)
        if same_training(existing, defense_name, data.info, options, seed):
            return existing, True
        raise AdvbenchError(f"{target} exists with other settings; pass --force to overwrite it or --name to keep both")
    return train(defense_name, data, options=options, seed=seed, name=entry, zoo_dir=zoo_dir, device=device,
                 observer=observer, discard_partial=force), False


def save(model: Defense, card: Card, zoo_dir: Path) -> Path:
    """Write the checkpoint (weights + card) and its JSON card, which adds the checkpoint's sha256."""
    path = Path(zoo_dir) / f"{card.name}.pt"
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    extra = {"reject_threshold": model.reject_threshold}
    buffer = io.BytesIO()
    torch.save({"card": dataclasses.asdict(card), "state_dict": state, "extra": extra}, buffer)
    data = buffer.getvalue()
    atomic_write_bytes(path, data)
    atomic_write_text(path.with_suffix(".json"), json.dumps(
        {**dataclasses.asdict(card), CHECKSUM_KEY: sha256_bytes(data)}, indent=2) + "\n")
    return path


def _ensure_writable(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AdvbenchError(f"cannot create directory {directory}: {exc.strerror}") from None
    if not os.access(directory, os.W_OK):
        raise AdvbenchError(f"directory {directory} is not writable")


def read_checkpoint(path: Path, data: bytes | None = None) -> dict[str, Any]:
    """A checkpoint's contents; pass `data` when its bytes were already read (no second read)."""
    blob = load_tensors(io.BytesIO(data) if data is not None else path, "checkpoint", "an advbench checkpoint", path)
    if not isinstance(blob, dict) or "card" not in blob or "state_dict" not in blob:
        raise AdvbenchError(f"checkpoint {path} is not an advbench checkpoint (no card)")
    return blob


def _card(data: Any, where: str) -> Card:
    try:
        return Card(**{k: v for k, v in data.items() if k != CHECKSUM_KEY})
    except (TypeError, AttributeError) as exc:
        raise AdvbenchError(f"{where} has an unreadable card: {exc}") from None


def verified_entry(name: str, zoo_dir: Path | None = None) -> tuple[Card, dict[str, Any]]:
    """A zoo entry's card and checkpoint, after checking that they belong together: the card
    inside the checkpoint names this entry and a registered defense, and the JSON card (what
    people and `zoo list` read) records this checkpoint's sha256 and the same card."""
    check_name(name)
    path = Path(zoo_dir or default_zoo_dir()) / f"{name}.pt"
    data = _read_bytes(path)
    blob = read_checkpoint(path, data)
    card = _card(blob["card"], f"checkpoint {path}")
    if card.name != name:
        raise AdvbenchError(f"checkpoint {path} holds zoo entry {card.name!r} ({card.defense}), not {name!r}: "
                            "it was copied or renamed; retrain it or restore the original file")
    if card.defense not in defenses:
        raise AdvbenchError(f"checkpoint {path} is a {card.defense!r} model, which is not a registered defense")
    json_path = path.with_suffix(".json")
    if json_path.exists():
        try:
            stored = json.loads(json_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise AdvbenchError(f"zoo card {json_path} is unreadable: {exc}") from None
        recorded = stored.get(CHECKSUM_KEY) if isinstance(stored, dict) else None
        if recorded is not None and recorded != sha256_bytes(data):
            raise AdvbenchError(f"checkpoint {path} does not match its card {json_path} (sha256 differs): "
                                "the weights were replaced; retrain it or restore the original file")
        differing = sorted(k for k, v in dataclasses.asdict(card).items()
                           if isinstance(stored, dict) and stored.get(k) != v)
        if differing:
            raise AdvbenchError(f"zoo card {json_path} disagrees with its checkpoint on {', '.join(differing)}: "
                                "the card was edited; retrain or restore it")
    return card, blob


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise AdvbenchError(f"checkpoint {path} does not exist") from None
    except OSError as exc:
        raise AdvbenchError(f"checkpoint {path} is unreadable: {exc.strerror}") from None


def checkpoint_sha256(name: str, zoo_dir: Path | None = None) -> str:
    return sha256_bytes(_read_bytes(Path(zoo_dir or default_zoo_dir()) / f"{name}.pt"))


def load(name: str, zoo_dir: Path | None = None, *, info: DataInfo | None = None) -> tuple[Defense, Card]:
    """Rebuild a verified zoo checkpoint on CPU, checking it fits the dataset in `info`."""
    card, blob = verified_entry(name, zoo_dir)
    path = Path(zoo_dir or default_zoo_dir()) / f"{name}.pt"
    if info is not None and (card.dataset != info.name or tuple(card.input_shape) != tuple(info.input_shape)):
        raise AdvbenchError(
            f"checkpoint {name} was trained on {card.dataset} {tuple(card.input_shape)}, "
            f"not {info.name} {tuple(info.input_shape)}"
        )
    cls = defenses.get(card.defense)
    config = cls.Config(**coerce_options(cls.Config, card.hyperparameters, f"checkpoint {name}"))
    model_info = DataInfo(card.dataset, tuple(card.input_shape), card.num_classes)
    model = cls.build(model_info, config)
    load_state(model, blob["state_dict"], path)
    model.reject_threshold = blob.get("extra", {}).get("reject_threshold")
    model.card = dataclasses.asdict(card)
    return model.eval(), card


def read_card(name: str, zoo_dir: Path | None = None) -> Card:
    """A zoo entry's verified card (see `verified_entry`)."""
    return verified_entry(name, zoo_dir)[0]


@dataclass(frozen=True)
class ZooEntry:
    """A zoo listing row: the entry name, its verified card, or why it cannot be trusted."""

    name: str
    card: Card | None
    problem: str | None = None


def list_entries(zoo_dir: Path | None = None) -> list[ZooEntry]:
    directory = Path(zoo_dir or default_zoo_dir())
    entries = []
    for path in sorted(directory.glob("*.pt")):
        try:
            entries.append(ZooEntry(path.stem, verified_entry(path.stem, directory)[0]))
        except AdvbenchError as exc:
            entries.append(ZooEntry(path.stem, None, str(exc)))
    return entries


def list_cards(zoo_dir: Path | None = None) -> list[Card]:
    """The verified cards of a zoo (entries that fail verification are left out)."""
    return [e.card for e in list_entries(zoo_dir) if e.card is not None]
