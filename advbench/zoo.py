"""The model zoo: trained checkpoints with JSON cards, and how defenses are found.

`zoo/<name>.pt` holds the weights and the card; `zoo/<name>.json` is the same card
for people and tools. Loading checks the card against the dataset so a checkpoint
for other inputs fails with a clear message instead of a shape error.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib
import inspect
import io
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .data import DEFAULT_DATASET, DataInfo, Dataset
from .defenses.base import Defense, ModelDefense, TrainableDefense
from .defenses.training import accuracy
from .errors import AdvbenchError
from .options import coerce_options
from .progress import Observer
from .registry import defenses
from .store import atomic_write_bytes, atomic_write_text


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


def default_name(defense: str, dataset: str) -> str:
    return f"{defense}-{dataset}"


def check_name(name: str) -> str:
    """Zoo names become file names: letters, digits and . _ + = - only."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+=-]*", name):
        raise AdvbenchError(f"zoo name {name!r} may only hold letters, digits and . _ + = -")
    return name


def train(
    defense_name: str, data: Dataset, *, options: dict[str, Any] | None = None, seed: int = 0,
    name: str | None = None, zoo_dir: Path | None = None, device: torch.device = torch.device("cpu"),
    observer: Observer | None = None,
) -> Card:
    """Train a registered defense and write `<zoo>/<name>.pt` and `.json` atomically."""
    observer = observer or Observer()
    cls = defenses.get(defense_name)
    if not (isinstance(cls, type) and issubclass(cls, TrainableDefense)):
        raise AdvbenchError(f"defense {defense_name!r} cannot be trained by advbench")
    config = cls.Config(**resolved_hyperparameters(defense_name, data.info, options))
    zoo_dir = Path(zoo_dir or default_zoo_dir())
    _ensure_writable(zoo_dir)
    torch.manual_seed(seed)
    model = cls.build(data.info, config).to(device)
    start = time.perf_counter()
    epoch_seconds = model.fit(data, config, seed=seed, device=device, observer=observer)
    seconds = time.perf_counter() - start
    model.eval()
    hyper = dataclasses.asdict(config)
    card = Card(
        name=check_name(name or default_name(defense_name, data.info.name)), defense=defense_name, dataset=data.info.name,
        input_shape=list(data.info.input_shape), num_classes=data.info.num_classes, hyperparameters=hyper,
        seed=seed, clean_accuracy=accuracy(model, data.test_x, data.test_y, device=device),
        train_seconds=round(seconds, 3),
        seconds_per_epoch=round(sum(epoch_seconds) / max(len(epoch_seconds), 1), 4),
        norm=hyper.get("norm", cls.norm), eps=hyper.get("eps"),
    )
    save(model, card, zoo_dir)
    return card


def resolved_hyperparameters(defense_name: str, info: DataInfo, options: dict[str, Any] | None) -> dict[str, Any]:
    """The hyperparameters a training run would record in its card (defaults filled in)."""
    cls = defenses.get(defense_name)
    config = cls.Config(**coerce_options(cls.Config, options or {}, f"defense {defense_name}"))
    return dataclasses.asdict(cls.resolve_config(config, info))


def same_training(card: Card, defense_name: str, info: DataInfo, options: dict[str, Any] | None, seed: int) -> bool:
    """Whether `card` records exactly the training these settings would run (so it can be reused)."""
    return (card.defense, card.dataset, card.seed) == (defense_name, info.name, seed) and \
        card.hyperparameters == resolved_hyperparameters(defense_name, info, options)


def save(model: Defense, card: Card, zoo_dir: Path) -> Path:
    path = Path(zoo_dir) / f"{card.name}.pt"
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    extra = {"reject_threshold": model.reject_threshold}
    buffer = io.BytesIO()
    torch.save({"card": dataclasses.asdict(card), "state_dict": state, "extra": extra}, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    atomic_write_text(path.with_suffix(".json"), json.dumps(dataclasses.asdict(card), indent=2) + "\n")
    return path


def _ensure_writable(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AdvbenchError(f"cannot create directory {directory}: {exc.strerror}") from None
    if not os.access(directory, os.W_OK):
        raise AdvbenchError(f"directory {directory} is not writable")


def _torch_load(path: Path, what: str, expected: str) -> Any:
    """torch.load on CPU (GPU-saved files included) with one-line errors; never unpickles code."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise AdvbenchError(f"{what} {path} does not exist") from None
    except Exception as exc:
        raise AdvbenchError(f"{what} {path} is corrupt or not {expected} ({type(exc).__name__})") from None


def read_checkpoint(path: Path) -> dict[str, Any]:
    blob = _torch_load(path, "checkpoint", "an advbench checkpoint")
    if not isinstance(blob, dict) or "card" not in blob or "state_dict" not in blob:
        raise AdvbenchError(f"checkpoint {path} is not an advbench checkpoint (no card)")
    return blob


def load(name: str, zoo_dir: Path | None = None, *, info: DataInfo | None = None) -> tuple[Defense, Card]:
    """Rebuild a zoo checkpoint on CPU, checking it fits the dataset in `info`."""
    path = Path(zoo_dir or default_zoo_dir()) / f"{name}.pt"
    blob = read_checkpoint(path)
    try:
        card = Card(**blob["card"])
    except TypeError as exc:
        raise AdvbenchError(f"checkpoint {path} has an unreadable card: {exc}") from None
    if info is not None and (card.dataset != info.name or tuple(card.input_shape) != tuple(info.input_shape)):
        raise AdvbenchError(
            f"checkpoint {name} was trained on {card.dataset} {tuple(card.input_shape)}, "
            f"not {info.name} {tuple(info.input_shape)}"
        )
    cls = defenses.get(card.defense)
    config = cls.Config(**coerce_options(cls.Config, card.hyperparameters, f"checkpoint {name}"))
    model_info = DataInfo(card.dataset, tuple(card.input_shape), card.num_classes)
    model = cls.build(model_info, config)
    _load_state(model, blob["state_dict"], path)
    model.reject_threshold = blob.get("extra", {}).get("reject_threshold")
    model.card = dataclasses.asdict(card)
    return model.eval(), card


def _load_state(model: torch.nn.Module, state: dict[str, Any], path: Path | str) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise AdvbenchError(f"weights in {path} do not fit the model: {first[1].strip() if len(first) > 1 else first[0]}") from None


def read_card(name: str, zoo_dir: Path | None = None) -> Card:
    """A zoo entry's card from its JSON file, without loading the weights."""
    path = Path(zoo_dir or default_zoo_dir()) / f"{name}.json"
    try:
        return Card(**json.loads(path.read_text()))
    except FileNotFoundError:
        raise AdvbenchError(f"zoo card {path} does not exist") from None
    except (json.JSONDecodeError, TypeError) as exc:
        raise AdvbenchError(f"zoo card {path} is unreadable: {exc}") from None


def list_cards(zoo_dir: Path | None = None) -> list[Card]:
    directory = Path(zoo_dir or default_zoo_dir())
    cards = []
    for path in sorted(directory.glob("*.json")):
        try:
            cards.append(Card(**json.loads(path.read_text())))
        except (json.JSONDecodeError, TypeError):
            continue
    return cards


def parse_spec(spec: str) -> tuple[str, str | None, int]:
    """`name[:mode][@seed]` -> (name, mode, seed); `@N` names an independently trained copy."""
    body, at, seed_text = spec.partition("@")
    seed = 0
    if at:
        try:
            seed = int(seed_text)
        except ValueError:
            raise AdvbenchError(f"defense {spec!r}: the part after @ must be an integer seed") from None
    base, _, mode = body.partition(":")
    return base, mode or None, seed


def resolve_defense(
    spec: str, data: Dataset, *, zoo_dir: Path | None = None, weights: Path | None = None,
    device: torch.device = torch.device("cpu"), observer: Observer | None = None,
    train_options: dict[str, Any] | None = None,
) -> Defense:
    """Turn a defense spec from the CLI or a grid into a ready model.

    `name[:mode][@seed][+detect[=FPR]]` (a registered defense, looked up as `<name>-<dataset>[-seed<N>]` in
    the zoo, or a zoo entry name), or `python:pkg.module:factory` with optional weights.
    `train_options` select a zoo entry trained with those hyperparameters
    (`<name>-<dataset>-key=value...`). A missing digits checkpoint is trained on the spot;
    others stop with the command that trains them.
    """
    from .defenses.logit_detection import parse_detect_suffix, with_logit_detection

    observer = observer or Observer()
    spec, detect_rate = parse_detect_suffix(spec)
    if detect_rate is not None:  # `DEFENSE+detect[=FPR]`: paper 002's logit-based detection on top
        model = resolve_defense(spec, data, zoo_dir=zoo_dir, weights=weights, device=device, observer=observer,
                                train_options=train_options)
        torch.manual_seed(0)  # stochastic logits: the same calibration every time
        return with_logit_detection(model, data.train_x, data.train_y, data.info.num_classes, detect_rate)
    zoo_dir = Path(zoo_dir or default_zoo_dir())
    if spec.startswith("python:"):
        return _from_python_factory(spec[len("python:"):], data.info, weights).to(device).eval()
    base, mode, seed = parse_spec(spec)
    if weights is not None:
        cls = defenses.get(base)
        model = cls.build(data.info, cls.resolve_config(cls.Config(), data.info))
        _load_state(model, _read_weights(Path(weights)), weights)
    elif (zoo_dir / f"{base}.pt").exists() and base not in defenses:
        model, _ = load(base, zoo_dir, info=data.info)
    else:
        defenses.get(base)  # unknown names fail here, with suggestions
        options = dict(train_options or {})
        suffix = "".join(f"-{k.replace('_', '-')}={v}" for k, v in sorted(options.items()))
        name = check_name(default_name(base, data.info.name) + suffix + (f"-seed{seed}" if seed else ""))
        if not (zoo_dir / f"{name}.pt").exists():
            if data.info.name != DEFAULT_DATASET:
                flags = "".join(f" --{k.replace('_', '-')} {v}" for k, v in sorted(options.items()))
                if seed:
                    flags += f" --seed {seed}"
                if seed or options:
                    flags += f" --name {name}"
                raise AdvbenchError(
                    f"no checkpoint {zoo_dir / name}.pt; train it first: "
                    f"advbench train {base} --dataset {data.info.name}{flags} --zoo-dir {zoo_dir}"
                )
            observer.message(f"no checkpoint {name} in {zoo_dir}: training {base} on {data.info.name} "
                             f"(seed {seed}{', ' + suffix[1:] if suffix else ''})")
            train(base, data, options=options, seed=seed, name=name, zoo_dir=zoo_dir, device=device,
                  observer=observer)
        model, _ = load(name, zoo_dir, info=data.info)
    model.select_mode(mode)
    return model.to(device).eval()


def _read_weights(path: Path) -> dict[str, Any]:
    blob = _torch_load(path, "weights file", "a torch state dict")
    if isinstance(blob, dict) and "state_dict" in blob:
        blob = blob["state_dict"]
    if not isinstance(blob, dict):
        raise AdvbenchError(f"weights file {path} does not hold a state dict")
    return blob


def _from_python_factory(target: str, info: DataInfo, weights: Path | None) -> Defense:
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise AdvbenchError(f"python defense {target!r} must look like python:package.module:factory")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise AdvbenchError(f"cannot load python defense {target!r}: {exc}") from None
    accepted = inspect.signature(factory).parameters
    kwargs = {k: v for k, v in {"input_shape": info.input_shape, "num_classes": info.num_classes}.items() if k in accepted}
    model = factory(**kwargs)
    if not isinstance(model, torch.nn.Module):
        raise AdvbenchError(f"python defense {target!r} returned {type(model).__name__}, not a torch module")
    if weights is not None:
        _load_state(model, _read_weights(Path(weights)), weights)
    return model if isinstance(model, Defense) else ModelDefense(model)
