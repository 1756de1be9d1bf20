"""Seeded predictions in batches: every batch is seeded by its key (a cell or a defense) and
its first sample's position, so a shard of the samples gets the same numbers as the whole."""

from __future__ import annotations

import zlib

import torch

from ..config import Grid
from ..defenses.base import Defense, Prediction
from ..errors import AdvbenchError


def cell_seed(seed: int, cell_id: str) -> int:
    """A seed per cell that does not depend on which other cells ran before (resume-safe)."""
    return zlib.crc32(f"{seed}:{cell_id}".encode())


def batch_seed(seed: int | None, key: str, start: int) -> None:
    """Seed torch for the batch starting at sample `start` of `key` (a cell or a defense)."""
    if seed is not None:
        torch.manual_seed(cell_seed(seed, f"{key}@{start}"))


def predict_batches(defense: Defense, inputs: torch.Tensor, batch_size: int, device: torch.device,
                    samples: int | None = None, labels: torch.Tensor | None = None,
                    seed: int | None = None, seed_key: str = "", offset: int = 0,
                    first_batch: Prediction | None = None) -> Prediction:
    """Clean predictions in batches; with `labels`, also the defense's certified radii (if any).
    With `seed`, each batch is seeded by `seed_key` (the defense) and its first sample's position
    `offset + i`, so a shard of the inputs gets the same predictions as the whole. `first_batch`
    is the first batch's prediction when a deterministic defense has already made it."""
    parts = []
    for i in range(0, len(inputs), batch_size):
        if i == 0 and first_batch is not None and len(first_batch.labels) == min(batch_size, len(inputs)):
            parts.append(first_batch)
            continue
        batch_seed(seed, seed_key, offset + i)
        parts.append(defense.predict(inputs[i:i + batch_size].to(device), samples=samples))
    scores = [p.reject_score for p in parts]
    radii = None
    if labels is not None:
        found = [defense.certified_radius(inputs[i:i + batch_size].to(device), labels[i:i + batch_size].to(device))
                 for i in range(0, len(inputs), batch_size)]
        radii = None if any(r is None for r in found) else torch.cat(found).cpu()  # type: ignore[arg-type]
    return Prediction(
        torch.cat([p.logits for p in parts]).cpu(), torch.cat([p.labels for p in parts]).cpu(),
        None if any(s is None for s in scores) else torch.cat(scores).cpu(),  # type: ignore[arg-type]
        radii,
    )


def clean_predictions(defense: Defense, defense_id: str, inputs: torch.Tensor, labels: torch.Tensor, grid: Grid,
                      device: torch.device, offset: int = 0, first_batch: Prediction | None = None) -> Prediction:
    """The defense's clean predictions (seeded per batch), refusing non-finite logits."""
    clean = predict_batches(defense, inputs, grid.batch_size, device, labels=labels, seed=grid.seed,
                            seed_key=defense_id, offset=offset, first_batch=first_batch)
    bad = ~torch.isfinite(clean.logits).all(dim=1)
    if bad.any():
        raise AdvbenchError(f"{defense_id} returned non-finite logits (NaN or inf) on {int(bad.sum())} of "
                            f"{len(bad)} clean inputs; its predictions cannot be evaluated")
    return clean
