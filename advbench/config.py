"""Grids: which defenses, attacks and epsilons a run evaluates, from TOML or CLI flags.

A grid is frozen once built; its fingerprint (a hash of everything that changes the
numbers) names the run and lets `--resume` find an interrupted run of the same grid.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

from .contract import CellRole
from .errors import AdvbenchError
from .norms import Norm, check_epsilon_range, parse_epsilon
from .specs import DefenseRef, expand_seeds

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_EPSILONS: dict[Norm, tuple[float, ...]] = {  # digits, and any dataset without its own
    Norm.LINF: (0.05, 0.1, 0.2, 0.3),
    Norm.L2: (0.5, 1.0, 2.0),
}
# The threat models the field reports for each dataset (RobustBench, the MNIST challenge).
DATASET_EPSILONS: dict[str, dict[Norm, tuple[float, ...]]] = {
    "mnist": {Norm.LINF: (0.3,), Norm.L2: (2.0,)},
    "fashion-mnist": {Norm.LINF: (0.1,), Norm.L2: (1.5,)},
    "cifar10": {Norm.LINF: (8 / 255,), Norm.L2: (0.5,)},
    "svhn": {Norm.LINF: (8 / 255,), Norm.L2: (0.5,)},
    "gtsrb": {Norm.LINF: (8 / 255,), Norm.L2: (0.5,)},
}


def default_epsilon_text() -> str:
    """The default epsilons per dataset, as `advbench list --params` prints them."""
    def eps(values: tuple[float, ...]) -> str:
        return ", ".join(f"{round(v * 255)}/255" if abs(v * 255 - round(v * 255)) < 1e-9 and v < 0.1 else f"{v:g}"
                         for v in values)

    parts = [f"digits and others Linf {eps(DEFAULT_EPSILONS[Norm.LINF])} / L2 {eps(DEFAULT_EPSILONS[Norm.L2])}"]
    parts += [f"{name} Linf {eps(by[Norm.LINF])} / L2 {eps(by[Norm.L2])}" for name, by in DATASET_EPSILONS.items()]
    return "; ".join(parts)


def default_epsilons(dataset: str, norm: Norm) -> tuple[float, ...]:
    """The epsilons an attack without its own gets on `dataset`."""
    return DATASET_EPSILONS.get(dataset, {}).get(norm, DEFAULT_EPSILONS[norm])
GRID_KEYS = {"dataset", "defenses", "attacks", "samples", "batch_size", "seed", "device", "sanity", "subset",
             "save_adversarials", "reuse", "threads", "workers", "carry_examples"}
# Which test points `samples = N` takes: the first N (RobustBench's convention, the default for the
# torchvision datasets) or a seeded random subset (the default on digits, whose test split is sorted by
# nothing in particular but small).
SUBSETS = ("first", "random")
# Settings that do not change any number: left out of the grid's fingerprint.
NOT_FINGERPRINTED = ("device", "save_adversarials", "reuse", "threads", "workers")


@dataclass(frozen=True)
class DefenseSpec:
    """A defense of a grid; `train` holds hyperparameters for the zoo entry it names
    (`<name>-<dataset>-key=value...`), trained with them when missing on digits."""

    spec: str
    weights: str | None = None
    label: str = ""
    train: tuple[tuple[str, Any], ...] = ()
    # at most this many of the grid's samples (the first of them): an expensive defense gets a
    # smaller, wider-interval sample than the others in one grid
    samples: int | None = None

    @property
    def id(self) -> str:
        return self.label or self.spec

    @cached_property
    def ref(self) -> DefenseRef:
        """The parsed spec (parsed once; a frozen dataclass keeps the cache in its __dict__)."""
        return DefenseRef.parse(self.spec)


@dataclass(frozen=True)
class AttackSpec:
    """One attack of a grid. With `source`, examples are crafted on that model (a defense
    spec, e.g. an independently trained copy `cnn@1`) and transferred to each defense."""

    name: str
    epsilons: tuple[float, ...] = ()
    options: tuple[tuple[str, Any], ...] = ()
    eot: int | None = None
    label: str = ""
    source: str | None = None
    only: tuple[str, ...] = ()  # the defenses (ids) this attack runs on; empty: all of the grid's
    role: CellRole = CellRole.EVALUATED  # sanity attacks are added by advbench.sanity

    def applies_to(self, defense: "DefenseSpec") -> bool:
        return not self.only or defense.id in self.only

    @property
    def id(self) -> str:
        if self.label:
            return self.label
        return f"{self.name} (from {self.source})" if self.source else self.name


@dataclass(frozen=True)
class Grid:
    defenses: tuple[DefenseSpec, ...]
    attacks: tuple[AttackSpec, ...]
    dataset: str = "digits"
    samples: int | None = 200
    batch_size: int = 100
    seed: int = 0
    device: str = "auto"
    sanity: bool = True  # add the masking sanity attacks (advbench.sanity)
    subset: str | None = None  # "first" or "random" test points; None: by dataset (see `subset_rule`)
    save_adversarials: bool = False  # keep each cell's adversarial inputs beside its records
    reuse: bool = True  # copy cells an earlier run computed on the same content (`advbench.reuse`)
    threads: int | None = None  # torch's CPU threads; None: torch's own choice
    # cells (as sample shards) in this many processes on this machine's CPU: a grid of small models
    # is bound by per-step overhead, not arithmetic, so separate processes beat torch's threads
    workers: int = 1
    # a sample a fixed-epsilon attack beat at a smaller epsilon keeps that verified example wherever
    # the attack failed on it at a larger one (it lies in the larger ball): a lower or equal bound
    carry_examples: bool = True

    def fingerprint(self) -> str:
        numbers = {k: v for k, v in asdict(self).items() if k not in NOT_FINGERPRINTED}
        return hashlib.sha256(json.dumps(numbers, sort_keys=True, default=str).encode()).hexdigest()

    def with_overrides(self, **overrides: Any) -> "Grid":
        """CLI flags win over the file; flags the user did not set (None) are dropped. Replaced
        defenses face every attack (the file's per-attack `defenses` named the old ones)."""
        grid = replace(self, **{k: v for k, v in overrides.items() if v is not None})
        if overrides.get("defenses") is not None:
            grid = replace(grid, attacks=tuple(replace(a, only=()) for a in grid.attacks))
        return grid


def _attack_spec(raw: Any, where: str) -> AttackSpec:
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, dict) or "name" not in raw:
        raise AdvbenchError(f"{where}: each attack needs a name (e.g. {{name = \"pgd-linf\", epsilons = [0.1]}})")
    raw = dict(raw)
    name = str(raw.pop("name"))
    epsilons = raw.pop("epsilons", ())
    if not isinstance(epsilons, (list, tuple)):
        raise AdvbenchError(f"{where}: attack {name}: epsilons must be a list, e.g. epsilons = [0.1, 0.3]")
    epsilons = tuple(parse_epsilon(e) for e in epsilons)
    eot = raw.pop("eot", None)
    if eot is not None and (not isinstance(eot, int) or eot < 1):
        raise AdvbenchError(f"{where}: attack {name}: eot must be a positive integer")
    label = str(raw.pop("label", ""))
    source = raw.pop("source", None)
    if source is not None and not isinstance(source, str):
        raise AdvbenchError(f"{where}: attack {name}: source must be a defense name")
    only = raw.pop("defenses", [])
    if not isinstance(only, list) or not all(isinstance(d, str) for d in only):
        raise AdvbenchError(f"{where}: attack {name}: defenses must be a list of the grid's defense names")
    return AttackSpec(name, epsilons, tuple(sorted(raw.items())), eot, label, source, tuple(only))


def _defense_specs(raw: Any, where: str) -> list[DefenseSpec]:
    """One grid entry: a spec (`cnn@0..4` gives five seeds) or a table (`seeds = 5` likewise)."""
    if isinstance(raw, str):
        return [DefenseSpec(spec) for spec in expand_seeds(raw)]
    if isinstance(raw, dict) and "name" in raw:
        unknown = set(raw) - {"name", "weights", "label", "train", "seeds", "samples"}
        if unknown:
            raise AdvbenchError(f"{where}: unknown defense keys {', '.join(sorted(unknown))}")
        weights = raw.get("weights")
        if weights is not None and not isinstance(weights, str):
            raise AdvbenchError(f"{where}: defense {raw['name']}: weights must be a file path in quotes, "
                                f"got {weights!r}")
        train = raw.get("train", {})
        if not isinstance(train, dict):
            raise AdvbenchError(f"{where}: defense {raw['name']}: train must be a table of hyperparameters")
        specs = expand_seeds(str(raw["name"]), raw.get("seeds"))
        samples = raw.get("samples")
        if samples is not None and (not _is_int(samples) or samples < 1):
            raise AdvbenchError(f"{where}: defense {raw['name']}: samples must be a positive integer, got {samples!r}")
        label = str(raw.get("label", ""))
        if label and len(specs) > 1:
            raise AdvbenchError(f"{where}: defense {raw['name']}: a label names one model, not {len(specs)} seeds")
        return [DefenseSpec(spec, raw.get("weights"), label, tuple(sorted(train.items())), samples) for spec in specs]
    raise AdvbenchError(f"{where}: each defense is a name or {{name = ..., weights = ...}}")


def grid_from_dict(data: dict[str, Any], where: str = "grid") -> Grid:
    unknown = set(data) - GRID_KEYS
    if unknown:
        raise AdvbenchError(f"{where}: unknown keys {', '.join(sorted(unknown))} (known: {', '.join(sorted(GRID_KEYS))})")
    defenses = tuple(spec for d in data.get("defenses", ["cnn"]) for spec in _defense_specs(d, where))
    attacks = tuple(_attack_spec(a, where) for a in data.get("attacks", []))
    if not defenses or not attacks:
        raise AdvbenchError(f"{where}: a grid needs at least one defense and one attack")
    kwargs = {k: data[k] for k in ("dataset", "samples", "batch_size", "seed", "device", "sanity", "subset",
                                   "save_adversarials", "reuse", "threads", "workers", "carry_examples") if k in data}
    grid = Grid(defenses, attacks, **kwargs)
    _check_restrictions(grid, where)
    return validate(grid)


def load_grid(path: Path) -> Grid:
    """A grid file; `presets/NAME.toml` falls back to the presets shipped with advbench."""
    path = Path(path)
    if not path.exists() and path.parent.name == "presets" and preset_path(path.name).exists():
        path = preset_path(path.name)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise AdvbenchError(f"grid file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AdvbenchError(f"grid file {path} is unreadable: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise AdvbenchError(f"grid file {path} is not valid TOML: {exc}") from None
    return grid_from_dict(data, where=str(path))


def preset_path(name: str) -> Path:
    return Path(str(resources.files("advbench") / "presets" / name))


def demo_grid() -> Grid:
    return load_grid(preset_path("demo.toml"))


def validate(grid: Grid) -> Grid:
    """Reject bad numbers before any work starts."""
    if not _is_int(grid.batch_size) or grid.batch_size < 1:
        raise AdvbenchError(f"batch size must be a positive integer, got {grid.batch_size!r}")
    if grid.samples is not None and (not _is_int(grid.samples) or grid.samples < 1):
        raise AdvbenchError(f"samples must be a positive integer, got {grid.samples!r}")
    if grid.threads is not None and (not _is_int(grid.threads) or grid.threads < 1):
        raise AdvbenchError(f"threads must be a positive integer, got {grid.threads!r}")
    if not _is_int(grid.workers) or grid.workers < 1:
        raise AdvbenchError(f"workers must be a positive integer, got {grid.workers!r}")
    if not _is_int(grid.seed):
        raise AdvbenchError(f"seed must be an integer, got {grid.seed!r}")
    for key in ("dataset", "device"):
        if not isinstance(getattr(grid, key), str):
            raise AdvbenchError(f"{key} must be a name in quotes, got {getattr(grid, key)!r}")
    if not isinstance(grid.sanity, bool):
        raise AdvbenchError(f"sanity must be true or false, got {grid.sanity!r}")
    for key in ("save_adversarials", "reuse", "carry_examples"):
        if not isinstance(getattr(grid, key), bool):
            raise AdvbenchError(f"{key} must be true or false, got {getattr(grid, key)!r}")
    if grid.subset is not None and grid.subset not in SUBSETS:
        raise AdvbenchError(f"subset must be one of {', '.join(SUBSETS)}, got {grid.subset!r}")
    for attack in grid.attacks:
        if attack.eot is not None and (isinstance(attack.eot, bool) or not isinstance(attack.eot, int) or attack.eot < 1):
            raise AdvbenchError(f"attack {attack.id}: eot must be a positive integer, got {attack.eot!r}")
    for defense in grid.defenses:
        defense.ref  # syntax errors surface with the grid (parsed once, kept)
    ids = [a.id for a in grid.attacks]
    if len(set(ids)) != len(ids):
        raise AdvbenchError("two attacks share a name; give one a distinct label = \"...\"")
    ids = [d.id for d in grid.defenses]
    if len(set(ids)) != len(ids):
        raise AdvbenchError("two defenses share a name; give one a distinct label = \"...\"")
    return grid


def _is_int(value: Any) -> bool:
    """TOML's `true` is a Python int too; a count or seed must be a real integer."""
    return isinstance(value, int) and not isinstance(value, bool)


def _check_restrictions(grid: Grid, where: str) -> None:
    ids = [d.id for d in grid.defenses]
    for attack in grid.attacks:
        unknown = [d for d in attack.only if d not in ids]
        if unknown:
            raise AdvbenchError(f"{where}: attack {attack.id}: defenses = {unknown[0]!r} is not a defense of the "
                                f"grid ({', '.join(ids)})")


def subset_rule(grid: Grid) -> str:
    """The grid's choice of test points, or the dataset's default: a seeded random subset on
    digits (as advbench always did there), the first N elsewhere (RobustBench's convention)."""
    if grid.subset is not None:
        return grid.subset
    return "random" if grid.dataset == "digits" else "first"


def resolve_epsilons(spec: AttackSpec, norm: Norm, bounds: tuple[float, float], dataset: str = "digits",
                     ) -> tuple[float, ...]:
    epsilons = spec.epsilons or default_epsilons(dataset, norm)
    for eps in epsilons:
        check_epsilon_range(eps, norm, bounds, spec.id)
    return tuple(sorted(set(epsilons)))


@dataclass(frozen=True)
class CellPlan:
    """One defense x attack pair of a grid."""

    defense: DefenseSpec
    attack: AttackSpec
    epsilons: tuple[float, ...] = field(default=())

    @property
    def id(self) -> str:
        return f"{self.defense.id}__{self.attack.id}"
