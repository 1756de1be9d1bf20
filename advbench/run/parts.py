"""A cell's finished batches on disk, and the saved adversarial inputs merged from them."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import torch

from ..attacks import Attack
from ..config import CellPlan
from ..contract import AttackKind
from ..errors import AdvbenchError
from ..store import RunStore


class CellParts:
    """A cell's finished batches on disk. Each batch's records (and its verified adversarial
    inputs, when the run keeps them) are written as a part as soon as it finishes; a resumed
    cell skips every batch whose part still checks out, so an interruption costs at most the
    batch in progress, and the merged records equal an uninterrupted run's (batches are seeded
    by their position)."""

    def __init__(self, store: RunStore, plan: CellPlan, attack: Attack, indices: torch.Tensor, batch_size: int,
                 keep_adversarials: bool) -> None:
        self.store, self.cell_id, self.indices, self.keep = store, plan.id, indices, keep_adversarials
        self.rows_per_sample = 1 if attack.kind is AttackKind.MINIMUM_NORM else len(plan.epsilons)
        self.starts = list(range(0, len(indices), batch_size))

    def finished(self, start: int, stop: int) -> bool:
        """Whether the batch [start, stop) has a part on disk with the records (and inputs) it should hold."""
        frame = self.store.read_part(self.cell_id, start)
        if frame is None or len(frame) != (stop - start) * self.rows_per_sample:
            return False
        if not ((frame["cell"] == self.cell_id).all() and
                sorted(set(frame["sample"].astype(int))) == sorted(self.indices[start:stop].tolist())):
            return False
        if self.keep:
            kept = self.store.read_adversarials_part(self.cell_id, start)
            return kept is not None and kept.ndim >= 2 and kept.shape[1] == stop - start
        return True

    def write(self, start: int, records: pd.DataFrame, adversarials: torch.Tensor | None) -> None:
        self.store.write_part(self.cell_id, start, records, adversarials)

    def adversarials(self) -> list[torch.Tensor]:
        """Every batch's kept inputs, in sample order ([epsilons, batch, ...] each)."""
        found = [self.store.read_adversarials_part(self.cell_id, start) for start in self.starts]
        if any(f is None for f in found):
            raise AdvbenchError(f"cell {self.cell_id}: a batch's saved adversarial inputs are missing or damaged; "
                                "rerun with --resume")
        return found  # type: ignore[return-value]


def saved_adversarials(plan: CellPlan, attack: Attack, indices: torch.Tensor,
                       batches: list[torch.Tensor]) -> dict[str, Any]:
    """What `--save-adversarials` keeps per cell: sample ids, epsilons (NaN for a minimum-norm
    attack) and the verified adversarial inputs, [epsilons, samples, ...] on the [0,1] scale."""
    epsilons = [math.nan] if attack.kind is AttackKind.MINIMUM_NORM else list(plan.epsilons)
    return {"cell": plan.id, "samples": indices.clone().long(), "epsilons": torch.tensor(epsilons),
            "adversarials": torch.cat(batches, dim=1)}
