"""From a defense spec to a model: plan it (checked against the registry, the zoo and the data
before anything runs), train zoo entries that are missing, load it.

A spec is a registered name, a zoo entry, `NAME:MODE`, `NAME@SEED`, `NAME+detect[=FPR]`,
`python:module:factory` or `robustbench:MODEL[:THREAT]` (see `advbench.specs`).
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .data import DEFAULT_DATASET, DataInfo, Dataset
from .defenses.base import Defense, ModelDefense, TrainableDefense
from .defenses.weights import construct, load_weights
from .errors import AdvbenchError
from .progress import Observer
from .registry import defenses
from .specs import DefenseRef
from .zoo import (Card, check_name, default_name, default_zoo_dir, load, read_card, resolved_hyperparameters,
                  train)


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
    model: Defense | None = field(default=None, compare=False, repr=False)  # in memory (advbench.benchmark)


def plan_defense(spec: str | DefenseRef, info: DataInfo, *, zoo_dir: Path | None = None,
                 weights: Path | str | None = None, train_options: dict[str, Any] | None = None,
                 model_dir: Path | None = None, model: Defense | None = None) -> DefensePlan:
    """Check a defense spec against the registry, the zoo and the data, without loading
    weights or training: every problem is found before a run directory exists. `model` is the
    defense itself, when the caller holds it in memory (the spec is then only its name)."""
    ref = spec if isinstance(spec, DefenseRef) else DefenseRef.parse(spec)
    if model is not None:
        if weights is not None or train_options:
            raise AdvbenchError(f"defense {ref}: an in-memory model takes no weights file or training options")
        return DefensePlan(ref, model=model)
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
    entry = check_name(default_name(ref.name, info.name, options, ref.seed))
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
    if plan.model is not None:
        model = plan.model
    elif ref.python_target:
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


def importable_elsewhere(target: str) -> bool:
    """Whether another process (a spawned worker, a Ray node) can import the module of a python:
    spec. A module that exists only in this process (a notebook's __main__, one put into
    sys.modules by hand) has no source to import there, so each of its cells would fail."""
    module_name = target.partition(":")[0]
    if module_name == "__main__":
        return False
    module = sys.modules.get(module_name)
    return module is None or getattr(module, "__spec__", None) is not None


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
