"""Runs that grow: a cell computed before is reused, not recomputed.

Each cell gets a content key, a hash of everything that decides its records: the test
points (dataset and sample indices), the grid's seed and batch size (they seed every
batch), the cell id, the exact weights attacked (and those of a transfer source), the
attack and its settings, the epsilons (of a fixed-epsilon attack: one more epsilon reruns
its cell, since its random starts share one seeded stream), EOT, the record schema, the
versions of advbench (with its git commit and a hash of its source) and torch, and the code
(`advbench.provenance`): for every plugin involved (attack, defense, dataset) its
distribution, version and a hash of its module's source, and for every model the classes it
is built from with their modules' source (a `python:` model's factory module too).

A new run looks the key up in the manifests of earlier runs under the same results
directory and copies a match whose records (and saved adversarial inputs, when needed)
still match their checksums; the manifest says which run each reused cell came from. What
reuse trusts is that results directory: the checksums detect damage, not deliberate edits
(records edited together with their manifest's checksum are reused). An earlier cell that
fails its checks is recomputed, with a warning naming its run. `--fresh` (``reuse=False``),
or `reuse = false` in a grid file, runs everything.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from . import __version__
from .attacks import Attack
from .config import CellPlan, Grid
from .contract import SCHEMA_VERSION, AttackKind, CellChecksum, CellInfo, Manifest
from .defenses.base import Defense, state_digest
from .errors import AdvbenchError
from .provenance import model_code, package_source_sha256, plugin_code, source_revision, source_sha256
from .registry import attacks, datasets, defenses
from .saved_adversarials import saved_problem
from .specs import DefenseRef
from .store import RunStore, list_runs
from .defense_loading import python_factory


def cell_key(plan: CellPlan, attack: Attack, grid: Grid, dataset: str, indices: torch.Tensor,
             weights_sha256: str, source_weights: str | None = None, eot: int | None = None,
             code: dict[str, Any] | None = None) -> str:
    """The content key of one cell (see the module docstring for what it covers); `code` is
    what `advbench.provenance` says about the cell's plugins and models."""
    content = {
        "schema": SCHEMA_VERSION, "advbench": __version__, "code": source_revision(), "torch": str(torch.__version__),
        "source_code": package_source_sha256(), "plugins": code,
        "dataset": dataset, "samples": hashlib.sha256(indices.numpy().astype("int64").tobytes()).hexdigest(),
        "seed": grid.seed, "batch_size": grid.batch_size, "cell": plan.id,
        "defense": plan.defense.spec, "weights": weights_sha256, "eot": eot,
        "attack": plan.attack.name, "settings": attack.hyperparameters(), "norm": str(attack.norm),
        # a minimum-norm attack's records do not depend on the epsilons it is read at
        "epsilons": [] if attack.kind is AttackKind.MINIMUM_NORM else list(plan.epsilons),
        "attack_eot": plan.attack.eot,
        "source": plan.attack.source, "source_weights": source_weights,
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


def content_key(plan: CellPlan, attack: Attack, grid: Grid, dataset: str, indices: torch.Tensor, manifest: Manifest,
                defense: Defense, source: Defense | None) -> str:
    """The cell's content key, from the weights and the code it runs (both executors call this)."""
    code = {"attack": plugin_code(attacks, plan.attack.name),
            # an in-memory dataset (advbench.benchmark) is registered nowhere: its name holds its content's digest
            "dataset": plugin_code(datasets, dataset) if dataset in datasets else None,
            "defense": defense_code(plan.defense.ref, defense),
            "source": defense_code(plan.attack.source, source) if plan.attack.source and source is not None else None}
    return cell_key(plan, attack, grid, dataset, indices, manifest.defenses[plan.defense.id].weights_sha256 or "",
                    state_digest(source) if source is not None else None, defense.eot_samples, code)


def defense_code(spec: str | DefenseRef, model: Defense) -> dict[str, Any]:
    """The code behind a defense: the classes its model is built from, a registered plugin's
    distribution and version, and for a `python:` spec its factory's module."""
    ref = spec if isinstance(spec, DefenseRef) else DefenseRef.parse(spec)
    factory = source_sha256(python_factory(ref.python_target)) if ref.python_target else None
    registered = not ref.python_target and not ref.robustbench and ref.name in defenses
    return {"model": model_code(model), "factory": factory,
            "plugin": plugin_code(defenses, ref.name) if registered else None}


@dataclass(frozen=True)
class EarlierCell:
    """A verified finished cell of an earlier run with the same content key."""

    store: RunStore
    cell_id: str
    checksum: CellChecksum
    adversarials: str | None  # sha256 of its saved adversarial inputs, None when it kept none
    info: CellInfo  # its planned cell (epsilons, kind), to check saved inputs against


class CellIndex:
    """Content keys of the finished cells of every earlier run under a results directory,
    read once (the run being written is left out)."""

    def __init__(self, results_dir: Path, exclude: Path | None = None) -> None:
        self._cells: dict[str, list[EarlierCell]] = {}
        for store in reversed(list_runs(results_dir)):  # newest first
            if exclude is not None and store.path.resolve() == Path(exclude).resolve():
                continue
            manifest = store.readable_manifest()
            if manifest is None or not manifest.resumable:
                continue
            infos = {cell.id: cell for cell in manifest.cells}
            for cell_id, key in manifest.content_keys.items():
                if cell_id in manifest.finished and cell_id in infos:
                    self._cells.setdefault(key, []).append(EarlierCell(
                        store, cell_id, manifest.finished[cell_id], manifest.adversarials.get(cell_id),
                        infos[cell_id]))

    def find(self, key: str, cell_id: str, need_adversarials: bool = False,
             warn: Callable[[str], None] | None = None) -> EarlierCell | None:
        """The newest earlier cell with `key` whose records (and saved adversarials, when
        needed) pass every check; None when there is none. Each earlier copy that fails is
        named through `warn` and never used."""
        for earlier in self._cells.get(key, []):
            if earlier.cell_id != cell_id or (need_adversarials and not earlier.adversarials):
                continue
            problem = earlier_cell_problem(earlier, need_adversarials)
            if problem is None:
                return earlier
            if warn is not None:
                warn(f"warning: cell {cell_id}: the copy in earlier run {earlier.store.run_id} is not reused: "
                     f"{problem}; it is computed again")
        return None


def earlier_cell_problem(earlier: EarlierCell, need_adversarials: bool) -> str | None:
    """Why an earlier run's cell cannot be copied: records or saved inputs that fail their
    checksums, do not parse, or disagree with each other."""
    try:
        records = earlier.store.read_cell(earlier.cell_id, earlier.checksum)
        if need_adversarials and earlier.adversarials:
            saved = earlier.store.read_adversarials(earlier.cell_id, earlier.adversarials)
            problem = saved_problem(saved, earlier.info, records)
            if problem:
                return f"its saved adversarials file {problem}"
    except AdvbenchError as exc:
        return str(exc)
    return None
