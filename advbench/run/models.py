"""Defenses by spec, loaded once per run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..config import DefenseSpec
from ..data import Dataset
from ..defenses.base import Defense
from ..store import sha256_file
from ..defense_loading import DefensePlan, load_defense, plan_defense
from ..zoo import checkpoint_sha256
from .plan import Plan

ModelKey = tuple[str, "str | None", tuple[tuple[str, Any], ...]]


class ModelCache:
    """Defenses by spec, loaded once per run (defenses, transfer sources, attack generators),
    from the plan's `DefensePlan`s; a spec the plan does not hold (a generator an attack asks
    for by name) is planned when first asked for. Never trains: missing zoo entries are trained
    by the front door before the run."""

    def __init__(self, data: Dataset, *, zoo_dir: Path | None, device: torch.device,
                 plans: dict[ModelKey, DefensePlan] | None = None) -> None:
        self.data, self.zoo_dir, self.device = data, zoo_dir, device
        self._plans: dict[ModelKey, DefensePlan] = dict(plans or {})
        self._models: dict[ModelKey, Defense] = {}
        self.checkpoints: dict[ModelKey, str | None] = {}

    def get(self, spec: str, weights: str | None = None, train: tuple[tuple[str, Any], ...] = ()) -> Defense:
        key: ModelKey = (spec, weights, train)
        if key not in self._models:
            plan = self._plans.get(key) or plan_defense(spec, self.data.info, zoo_dir=self.zoo_dir, weights=weights,
                                                        train_options=dict(train))
            self._models[key] = load_defense(plan, self.data, zoo_dir=self.zoo_dir, device=self.device)
            self.checkpoints[key] = (checkpoint_sha256(plan.entry, self.zoo_dir) if plan.entry
                                     else sha256_file(plan.weights) if plan.weights else None)
        return self._models[key]


def model_key(spec: DefenseSpec) -> ModelKey:
    return (spec.spec, spec.weights, spec.train)


def model_cache(plan: Plan) -> ModelCache:
    """The cache of a run, loading each planned defense and source from its plan."""
    plans = {model_key(d.spec): d.model for d in plan.defenses}
    plans.update({(source, None, ()): model for source, model in plan.sources.items()})
    return ModelCache(plan.data, zoo_dir=plan.zoo_dir, device=plan.device, plans=plans)
