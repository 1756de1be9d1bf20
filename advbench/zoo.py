"""The model zoo: trained checkpoints with JSON cards, and how defenses are found.

`zoo/<name>.pt` holds the weights and the card; `zoo/<name>.json` is the same card
for people and tools. Loading checks the card against the dataset so a checkpoint
for other inputs fails with a clear message instead of a shape error.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import importlib
import inspect
import io
import json
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .data import DEFAULT_DATASET, DataInfo, Dataset
from .defenses.base import Defense, ModelDefense, TrainableDefense
from .defenses.training import CheckpointPlace, accuracy
from .defenses.weights import construct, load_state, load_tensors, load_weights
from .errors import AdvbenchError
from .options import coerce_options
from .progress import Observer
from .registry import defenses
from .specs import DefenseRef
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


# ----------------------------------------------------------------------------- defense specs -> models

@dataclass(frozen=True)
class DefensePlan:
    """How a defense spec becomes a model, decided before anything runs: load zoo entry
    `entry` (trained first when `needs_training`), build plugin class `cls` with `weights`,
    or call a python factory."""

    ref: DefenseRef
    entry: str | None = None
    train_options: tuple[tuple[str, Any], ...] = ()
    needs_training: bool = False
    weights: Path | None = None
    defense_name: str | None = None  # the registered defense behind the spec


def plan_defense(spec: str | DefenseRef, info: DataInfo, *, zoo_dir: Path | None = None,
                 weights: Path | str | None = None, train_options: dict[str, Any] | None = None,
                 model_dir: Path | None = None) -> DefensePlan:
    """Check a defense spec against the registry, the zoo and the data, without loading
    weights or training: every problem is found before a run directory exists."""
    ref = spec if isinstance(spec, DefenseRef) else DefenseRef.parse(spec)
    zoo_dir = Path(zoo_dir or default_zoo_dir())
    weights = Path(weights) if weights else None
    if weights is not None and not weights.is_file():
        raise AdvbenchError(f"weights file {weights} does not exist")
    if ref.python_target:
        python_factory(ref.python_target)  # import errors surface now
        return DefensePlan(ref, weights=weights)
    if ref.robustbench:
        from .defenses import robustbench_models

        if ref.threat is None:
            raise AdvbenchError(f"defense {ref}: name its threat model, e.g. {ref}:Linf (a grid whose attacks all "
                                "use one norm fills it in)")
        path = robustbench_models.plan(ref.robustbench, robustbench_models.threat_name(ref.threat), info, model_dir)
        return DefensePlan(ref, weights=path)
    if ref.name not in defenses:
        if not (zoo_dir / f"{ref.name}.pt").exists():
            defenses.get(ref.name)  # unknown: fails with suggestions
        card = read_card(ref.name, zoo_dir)
        _check_mode(ref, defenses.get(card.defense))
        return DefensePlan(ref, entry=ref.name, defense_name=card.defense)
    cls = defenses.get(ref.name)
    _check_mode(ref, cls)
    if weights is not None or not (isinstance(cls, type) and issubclass(cls, TrainableDefense)):
        if weights is None and cls.load.__func__ is Defense.load.__func__ and _needs_weights(cls, info):
            raise AdvbenchError(f"defense {ref.name} is not trainable by advbench: give its weights "
                                f"(--weights FILE, or weights = \"FILE\" in a grid)")
        return DefensePlan(ref, weights=weights, defense_name=ref.name)
    options = dict(sorted((train_options or {}).items()))
    resolved_hyperparameters(ref.name, info, options)  # bad training options fail now
    suffix = "".join(f"-{k.replace('_', '-')}={v}" for k, v in options.items())
    entry = check_name(default_name(ref.name, info.name) + suffix + (f"-seed{ref.seed}" if ref.seed else ""))
    missing = not (zoo_dir / f"{entry}.pt").exists()
    if missing and info.name != DEFAULT_DATASET:
        flags = "".join(f" --{k.replace('_', '-')} {v}" for k, v in options.items())
        flags += f" --seed {ref.seed}" if ref.seed else ""
        flags += f" --name {entry}" if (ref.seed or options) else ""
        raise AdvbenchError(f"no checkpoint {zoo_dir / entry}.pt; train it first: "
                            f"advbench train {ref.name} --dataset {info.name}{flags} --zoo-dir {zoo_dir}")
    if not missing:
        card = read_card(entry, zoo_dir)
        if card.defense != ref.name:
            raise AdvbenchError(f"zoo entry {entry} holds a {card.defense} model, not {ref.name}")
    return DefensePlan(ref, entry=entry, train_options=tuple(options.items()), needs_training=missing,
                       defense_name=ref.name)


def _check_mode(ref: DefenseRef, cls: Any) -> None:
    if ref.mode is not None and ref.mode not in getattr(cls, "modes", ()):
        offered = ", ".join(getattr(cls, "modes", ())) or "none"
        raise AdvbenchError(f"defense {ref}: no mode {ref.mode!r} (modes: {offered})")


def _needs_weights(cls: Any, info: DataInfo) -> bool:
    """A plugin class with parameters needs a weights file (random weights are no defense)."""
    try:
        model = construct(cls, info)
    except Exception:  # noqa: BLE001 - construction problems surface when it is loaded
        return True
    return any(True for _ in model.parameters())


def train_missing(plans: list[DefensePlan], data: Dataset, *, zoo_dir: Path | None, device: torch.device,
                  observer: Observer) -> list[Card]:
    """Train every planned zoo entry that does not exist yet (digits only), with a message each."""
    cards, done = [], set()
    for plan in plans:
        if not plan.needs_training or plan.entry in done or plan.defense_name is None:
            continue
        done.add(plan.entry)
        path = Path(zoo_dir or default_zoo_dir()) / f"{plan.entry}.pt"
        if path.exists():  # trained meanwhile (e.g. by an earlier plan of the same entry)
            continue
        options = dict(plan.train_options)
        observer.message(f"training {plan.defense_name} on {data.info.name} as zoo entry {plan.entry} "
                         f"(seed {plan.ref.seed}{', ' + ', '.join(f'{k}={v}' for k, v in options.items()) if options else ''})")
        cards.append(train(plan.defense_name, data, options=options, seed=plan.ref.seed, name=plan.entry,
                           zoo_dir=zoo_dir, device=device, observer=observer))
    return cards


def load_defense(plan: DefensePlan, data: Dataset, *, zoo_dir: Path | None = None,
                 device: torch.device = torch.device("cpu")) -> Defense:
    """The model a plan describes, on `device` in eval mode; never trains."""
    from .defenses.logit_detection import with_logit_detection

    ref = plan.ref
    if ref.python_target:
        model = _from_python_factory(ref.python_target, data.info, plan.weights)
    elif ref.robustbench:
        from .defenses import robustbench_models

        assert plan.weights is not None  # plan_defense found the checkpoint
        model = ModelDefense(robustbench_models.load(ref.robustbench, robustbench_models.threat_name(ref.threat or ""),
                                                     data.info, plan.weights))
    elif plan.entry is not None:
        if plan.needs_training and not (Path(zoo_dir or default_zoo_dir()) / f"{plan.entry}.pt").exists():
            raise AdvbenchError(f"zoo entry {plan.entry} has not been trained yet; train it first: "
                                f"advbench train {plan.defense_name}")
        model, _ = load(plan.entry, zoo_dir, info=data.info)
    else:
        model = defenses.get(ref.name).load(data.info, plan.weights)
        if not isinstance(model, Defense):
            raise AdvbenchError(f"defense {ref.name}: load() returned {type(model).__name__}, not a Defense")
    model.select_mode(ref.mode, ref.mode_argument)
    model = model.to(device).eval()
    if ref.detect_rate is not None:  # `DEFENSE+detect[=FPR]`: paper 002's logit-based detection on top
        torch.manual_seed(0)  # stochastic logits: the same calibration every time
        model = with_logit_detection(model, data.train_x, data.train_y, data.info.num_classes, ref.detect_rate)
    return model.to(device).eval()


def resolve_defense(
    spec: str, data: Dataset, *, zoo_dir: Path | None = None, weights: Path | None = None,
    device: torch.device = torch.device("cpu"), observer: Observer | None = None,
    train_options: dict[str, Any] | None = None, train_if_missing: bool = False,
) -> Defense:
    """A ready model from a defense spec (see `advbench.specs`): plan, train only when
    `train_if_missing` says so (reported through `observer`), load."""
    plan = plan_defense(spec, data.info, zoo_dir=zoo_dir, weights=weights, train_options=train_options)
    if plan.needs_training:
        if not train_if_missing:
            raise AdvbenchError(f"no checkpoint {plan.entry} in {zoo_dir or default_zoo_dir()}; train it first: "
                                f"advbench train {plan.defense_name}")
        train_missing([plan], data, zoo_dir=zoo_dir, device=device, observer=observer or Observer())
    return load_defense(plan, data, zoo_dir=zoo_dir, device=device)


def python_factory(target: str) -> Any:
    """The factory of a python: spec: a function or class. Modules are found in the current
    directory too, as `python -m advbench` finds them (the installed `advbench` script's path
    is its bin/). Whatever the module raises on import (even SystemExit) is one line."""
    module_name, _, attr = target.partition(":")
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)  # after installed packages: a local file never shadows one
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise AdvbenchError(f"cannot load python defense {target!r}: {exc}") from None
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - user code: even sys.exit() must not end advbench silently
        raise AdvbenchError(f"python defense {target!r}: importing {module_name} raised "
                            f"{_exception_line(exc)}") from None
    if not (inspect.isclass(factory) or inspect.isroutine(factory)):
        raise AdvbenchError(f"python defense {target!r} is a {type(factory).__name__}, not a function or class that "
                            "builds a torch module")
    return factory


def _exception_line(exc: BaseException) -> str:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _from_python_factory(target: str, info: DataInfo, weights: Path | None) -> Defense:
    try:
        model = construct(python_factory(target), info)
    except (AdvbenchError, KeyboardInterrupt):
        raise
    except BaseException as exc:  # noqa: BLE001 - user code, as above
        raise AdvbenchError(f"python defense {target!r}: the factory raised {_exception_line(exc)}") from None
    if not isinstance(model, torch.nn.Module):
        raise AdvbenchError(f"python defense {target!r} returned {type(model).__name__}, not a torch module")
    if weights is not None:
        load_weights(model, weights)
    return model if isinstance(model, Defense) else ModelDefense(model)
