"""The plan of a run, made once before anything is written.

`prepare(grid)` adds the sanity attacks, fixes the choice of test points, loads the data,
parses every defense spec once, builds every attack once with its resolved epsilons and
its `CellInfo`, and checks each defense against the registry and the zoo. Both executors,
the model cache, the manifest and the content keys read this `Plan`; nothing re-parses.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping

import torch

from ..attacks import Attack, make_attack
from ..config import AttackSpec, CellPlan, DefenseSpec, Grid, resolve_epsilons, subset_rule
from ..contract import AttackKind, CellInfo
from ..data import Dataset, load_dataset
from ..errors import AdvbenchError
from ..norms import parse_norm
from ..sanity import with_sanity_attacks
from ..settings import Paths
from ..defense_loading import DefensePlan, plan_defense
from ..defenses.base import Defense
from ..zoo import default_zoo_dir
from .device import pick_device


@dataclass(frozen=True)
class PlannedCell:
    """One defense x attack cell: its attack built once, its epsilons resolved once."""

    plan: CellPlan
    attack: Attack
    info: CellInfo

    @property
    def id(self) -> str:
        return self.plan.id


@dataclass(frozen=True)
class PlannedDefense:
    """A defense of the grid: its spec, how it becomes a model, and its cells."""

    spec: DefenseSpec
    model: DefensePlan
    cells: tuple[PlannedCell, ...]

    @property
    def id(self) -> str:
        return self.spec.id


@dataclass(frozen=True)
class Samples:
    """The test points a grid evaluates."""

    indices: torch.Tensor
    inputs: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.indices)

    def first(self, count: int | None) -> "Samples":
        """The first `count` of these samples (all of them for None): a prefix of a seeded random
        subset is itself one, and of the first N test points, the first `count`."""
        if count is None or count >= len(self):
            return self
        return Samples(self.indices[:count], self.inputs[:count], self.labels[:count])


@dataclass(frozen=True)
class Plan:
    """Everything a run needs decided before it starts (see the module docstring)."""

    grid: Grid
    data: Dataset
    defenses: tuple[PlannedDefense, ...]
    sources: dict[str, DefensePlan]  # transfer sources by spec: loaded as models, not evaluated
    samples: Samples
    device: torch.device
    paths: Paths = Paths()

    @property
    def zoo_dir(self) -> Path | None:
        return self.paths.zoo_dir

    @property
    def cells(self) -> list[PlannedCell]:
        return [cell for defense in self.defenses for cell in defense.cells]

    def samples_for(self, defense: DefenseSpec) -> Samples:
        """The samples `defense` is evaluated on: the grid's, or the first of them (`samples` of the defense)."""
        return self.samples.first(defense.samples)

    def models(self) -> list[DefensePlan]:
        """What must exist in the zoo (or be trained) before the run: defenses, then sources."""
        return [d.model for d in self.defenses] + list(self.sources.values())


class BuiltAttacks:
    """Each attack of a grid built once, shared by every step of planning that needs it (its norm
    for the sanity attacks and RobustBench threats, the attack object for the cells): attacks are
    stateless, so specs with the same name and options share one."""

    def __init__(self) -> None:
        self._built: dict[str, Attack] = {}

    def __call__(self, spec: AttackSpec) -> Attack:
        key = repr((spec.name, spec.options))
        if key not in self._built:
            self._built[key] = make_attack(spec.name, dict(spec.options))
        return self._built[key]


def plan_cells(grid: Grid, data: Dataset, built: BuiltAttacks | None = None) -> list[PlannedCell]:
    """Expand the grid and build every attack once, so bad options fail before any work."""
    if grid.samples is not None and grid.samples > len(data.test_y):
        raise AdvbenchError(f"{grid.samples} samples requested but {data.info.name} has only {len(data.test_y)} "
                            "test samples")
    cells = []
    built = built or BuiltAttacks()
    attacks = [(spec, built(spec)) for spec in grid.attacks]
    for defense in grid.defenses:
        for spec, attack in attacks:
            if spec.applies_to(defense):
                epsilons = resolve_epsilons(spec, attack.norm, data.info.bounds, data.info.name)
                plan = CellPlan(defense, spec, epsilons)
                cells.append(PlannedCell(plan, attack, cell_info(plan, attack)))
    ids = [cell.id for cell in cells]
    if len(set(ids)) != len(ids):
        clash = next(i for i in ids if ids.count(i) > 1)
        raise AdvbenchError(f"two cells would share the id {clash!r}; give a defense or attack a distinct label")
    return cells


def cell_info(plan: CellPlan, attack: Attack) -> CellInfo:
    return CellInfo(id=plan.id, defense=plan.defense.id, attack=plan.attack.id, attack_name=plan.attack.name,
                    norm=parse_norm(attack.norm), kind=AttackKind(attack.kind), epsilons=tuple(plan.epsilons),
                    hyperparameters=attack.hyperparameters(), eot=plan.attack.eot, source=plan.attack.source,
                    role=plan.attack.role)


def plan_grid(grid: Grid, data: Dataset, paths: Paths = Paths(), built: BuiltAttacks | None = None,
              models: Mapping[str, Defense] | None = None) -> Plan:
    """The plan of `grid` as it stands (no sanity attacks added): cells, models, samples.
    `models` are defenses held in memory, by their spec in the grid."""
    zoo_dir = paths.zoo_dir
    cells = plan_cells(grid, data, built)
    models = models or {}
    defenses = tuple(
        PlannedDefense(spec, plan_defense(spec.ref, data.info, zoo_dir=zoo_dir, weights=spec.weights,
                                          train_options=dict(spec.train), model_dir=paths.model_dir,
                                          model=models.get(spec.spec)),
                       tuple(c for c in cells if c.plan.defense == spec))
        for spec in grid.defenses)
    sources = {source: plan_defense(source, data.info, zoo_dir=zoo_dir, model_dir=paths.model_dir)
               for source in sorted({a.source for a in grid.attacks if a.source})}
    indices, inputs, labels = data.test_subset(grid.samples, grid.seed, first=subset_rule(grid) == "first")
    return Plan(grid, data, defenses, sources, Samples(indices, inputs, labels), pick_device(grid.device), paths)


def prepare(grid: Grid, paths: Paths = Paths(), *, models: Mapping[str, Defense] | None = None,
            data: Dataset | None = None) -> Plan:
    """Validate everything about `grid` (with its sanity attacks added) without writing anything.
    `models` (defenses by spec) and `data` are held in memory by the caller (`advbench.benchmark`)."""
    built = BuiltAttacks()
    grid = with_sanity_attacks(grid, Path(paths.zoo_dir or default_zoo_dir()), built)
    grid = replace(grid, subset=subset_rule(grid))  # the manifest records the choice
    grid = with_robustbench_threats(grid, built)
    if data is not None and data.info.name != grid.dataset:
        raise AdvbenchError(f"the grid names dataset {grid.dataset}, the data given is {data.info.name}")
    data = data or load_dataset(grid.dataset, paths.data_dir, paths.download)
    return plan_grid(grid, data, paths, built, models)


def with_robustbench_threats(grid: Grid, built: BuiltAttacks) -> Grid:
    """`robustbench:MODEL` without a threat model gets the norm of the grid's attacks (when
    they all use one), keeping its name as the label so tables and restrictions still match."""
    if not any(d.ref.robustbench and d.ref.threat is None for d in grid.defenses):
        return grid
    norms = {parse_norm(built(a).norm) for a in grid.attacks}
    if len(norms) != 1:
        return grid  # plan_defense asks for an explicit threat model
    (norm,) = norms
    defenses = tuple(replace(d, spec=str(replace(d.ref, threat=norm.label)), label=d.label or d.spec)
                     if d.ref.robustbench and d.ref.threat is None else d for d in grid.defenses)
    return replace(grid, defenses=defenses)
