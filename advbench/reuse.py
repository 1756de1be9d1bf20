"""Runs that grow: a cell computed before is reused, not recomputed.

Each cell gets a content key, a hash of everything that decides its records: the test
points (dataset and sample indices), the grid's seed and batch size (they seed every
batch), the cell id, the exact weights attacked (and those of a transfer source), the
attack and its settings, the epsilons (of a fixed-epsilon attack: one more epsilon reruns
its cell, since its random starts share one seeded stream), EOT, the record schema and
the versions of advbench (with its git commit when it runs from a checkout) and torch.
A new run looks the key up in the manifests of earlier runs under the same results
directory and copies a match whose records still verify; the manifest says which run each
reused cell came from. `--fresh` (``reuse=False``) runs everything.

Not covered by the key: a change to a python: factory's code that leaves its weights
alone, and uncommitted edits to advbench itself; rerun such cells with --fresh.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from . import __version__
from .attacks import Attack
from .config import CellPlan, Grid
from .contract import SCHEMA_VERSION, AttackKind, CellChecksum
from .store import RunStore, list_runs


def cell_key(plan: CellPlan, attack: Attack, grid: Grid, dataset: str, indices: torch.Tensor,
             weights_sha256: str, source_sha256: str | None = None, eot: int | None = None) -> str:
    """The content key of one cell (see the module docstring for what it covers)."""
    from .runner import source_revision

    content = {
        "schema": SCHEMA_VERSION, "advbench": __version__, "code": source_revision(), "torch": str(torch.__version__),
        "dataset": dataset, "samples": hashlib.sha256(indices.numpy().astype("int64").tobytes()).hexdigest(),
        "seed": grid.seed, "batch_size": grid.batch_size, "cell": plan.id,
        "defense": plan.defense.spec, "weights": weights_sha256, "eot": eot,
        "attack": plan.attack.name, "settings": attack.hyperparameters(), "norm": str(attack.norm),
        # a minimum-norm attack's records do not depend on the epsilons it is read at
        "epsilons": [] if attack.kind is AttackKind.MINIMUM_NORM else list(plan.epsilons),
        "attack_eot": plan.attack.eot,
        "source": plan.attack.source, "source_weights": source_sha256,
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class EarlierCell:
    """A verified finished cell of an earlier run with the same content key."""

    store: RunStore
    cell_id: str
    checksum: CellChecksum
    adversarials: str | None  # sha256 of its saved adversarial inputs, None when it kept none


class CellIndex:
    """Content keys of the finished cells of every earlier run under a results directory,
    read once (the run being written is left out)."""

    def __init__(self, results_dir: Path, exclude: Path | None = None) -> None:
        self._cells: dict[str, list[EarlierCell]] = {}
        for store in reversed(list_runs(results_dir)):  # newest first
            if exclude is not None and store.path.resolve() == Path(exclude).resolve():
                continue
            manifest = store.readable_manifest()
            if manifest is None or manifest.legacy:
                continue
            for cell_id, key in manifest.content_keys.items():
                if cell_id in manifest.finished:
                    self._cells.setdefault(key, []).append(EarlierCell(
                        store, cell_id, manifest.finished[cell_id], manifest.adversarials.get(cell_id)))

    def find(self, key: str, cell_id: str, need_adversarials: bool = False) -> EarlierCell | None:
        """The newest earlier cell with `key` whose records (and saved adversarials, when
        needed) still verify; None when there is none."""
        for earlier in self._cells.get(key, []):
            if earlier.cell_id != cell_id or (need_adversarials and not earlier.adversarials):
                continue
            if earlier.store.cell_problem(earlier.cell_id, earlier.checksum) is None:
                return earlier
        return None
