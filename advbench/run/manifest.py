"""The run's manifest: written when a run starts, checked when it resumes, and told what
each defense is (weights digest, randomness, reject option) before its cells run."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass

import torch

from ..contract import SCHEMA_VERSION, DefenseInfo, Manifest
from ..defenses.base import Defense, Prediction, state_digest
from ..errors import AdvbenchError
from ..progress import Observer
from ..provenance import git_commit, library_versions
from ..store import RunStore
from .plan import Plan


def build_manifest(plan: Plan) -> Manifest:
    return Manifest(
        fingerprint=plan.grid.fingerprint(),
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds"), grid=asdict(plan.grid),
        device=str(plan.device), versions=library_versions(), git_commit=git_commit(),
        threads=torch.get_num_threads(), cells=[cell.info for cell in plan.cells],
    )


def open_manifest(store: RunStore, plan: Plan, observer: Observer) -> Manifest:
    """The run's manifest: a new one (written at once), or the stored one when resuming,
    with every finished cell's records checked against its checksum (damaged cells rerun)."""
    if not (store.path / "manifest.json").exists():
        manifest = build_manifest(plan)
        store.write_manifest(manifest)
        return manifest
    manifest = store.manifest()
    if not manifest.resumable:
        raise AdvbenchError(f"run {store.run_id} was written with run schema {manifest.schema_version} (this advbench "
                            f"writes {SCHEMA_VERSION}) and cannot be resumed; start a new run")
    if manifest.fingerprint != plan.grid.fingerprint():
        raise AdvbenchError(f"run {store.run_id} is a run of another grid; it cannot be resumed with this one")
    for cell_id, checksum in list(manifest.finished.items()):
        problem = store.cell_problem(cell_id, checksum)
        if problem:
            observer.message(f"warning: cell {cell_id}: {problem}; it is run again")
            del manifest.finished[cell_id]
    store.write_manifest(manifest)
    return manifest


@dataclass(frozen=True)
class Described:
    """What describing a defense found: whether its weights changed since the run started, and its
    prediction of the probe batch when that is its clean prediction too (a deterministic
    defense), so that the clean predictions need not compute the batch again."""

    weights_changed: bool
    probe_prediction: Prediction | None


def describe_defense(manifest: Manifest, defense_id: str, defense: Defense, spec: str, probe: torch.Tensor,
                     observer: Observer, checkpoint: str | None = None, num_classes: int | None = None) -> Described:
    """Record what the report and the trust checks need to know about a defense; finished cells
    of an earlier model (its weights changed since they ran) are dropped so that they rerun.
    A model that fails on the probe inputs, or gives other than `num_classes` outputs, is refused."""
    first = checked_prediction(defense, defense_id, probe, num_classes)
    digest = state_digest(defense)
    earlier = manifest.defenses.get(defense_id)
    stale: list[str] = []
    if earlier is not None and earlier.weights_sha256 not in (None, digest):
        stale = [c.id for c in manifest.cells if c.defense == defense_id and c.id in manifest.finished]
        for cell_id in stale:
            del manifest.finished[cell_id]
        observer.message(f"warning: the weights of {defense_id} changed since this run started "
                         f"({earlier.weights_sha256[:12]} -> {digest[:12]}): its {len(stale)} finished cell(s) "
                         "are run again so that no column mixes two models")
    info = DefenseInfo(spec=spec, stochastic=defense.stochastic, eot_samples=defense.eot_samples,
                       reject_threshold=defense.reject_threshold, card=defense.card, weights_sha256=digest,
                       checkpoint_sha256=checkpoint)
    changed = undeclared_randomness(defense, probe, first)
    if changed:
        info.nondeterministic = changed
        observer.message(f"warning: {defense_id} is not declared stochastic but {changed}")
    manifest.defenses[defense_id] = info
    return Described(earlier is not None and earlier.weights_sha256 not in (None, digest),
                     first if not defense.stochastic and not changed else None)


def checked_prediction(defense: Defense, defense_id: str, probe: torch.Tensor, num_classes: int | None) -> Prediction:
    """The defense's prediction of a batch of test inputs (one pass, even when stochastic), or
    one line naming the defense when it cannot classify the data: it raises on the batch, or its
    logits are not one per class."""
    try:
        with torch.no_grad():
            prediction = defense.predict(probe, samples=1)
    except Exception as exc:  # noqa: BLE001 - user models fail in every way; the cause goes in one line
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise AdvbenchError(f"defense {defense_id} fails on a batch of test inputs of shape {tuple(probe.shape)}: "
                            f"{type(exc).__name__}{': ' + message if message else ''}") from None
    logits = prediction.logits
    if num_classes is not None and (logits.ndim != 2 or logits.shape[1] != num_classes):
        raise AdvbenchError(f"defense {defense_id} gives outputs of shape {tuple(logits.shape)} for "
                            f"{len(probe)} inputs, but the data has {num_classes} classes (expected "
                            f"[{len(probe)}, {num_classes}] logits)")
    return prediction


def undeclared_randomness(defense: Defense, x: torch.Tensor, first: Prediction) -> str | None:
    """For a defense not declared stochastic: how a second identical call disagrees with `first`, if it does."""
    if defense.stochastic:
        return None
    with torch.no_grad():
        second = defense.predict(x)
    labels = (first.labels != second.labels).float().mean().item()
    gap = (first.logits - second.logits).abs().max().item()
    scale = first.logits.abs().max().item() or 1.0
    if labels > 0 or gap > 1e-3 * scale:
        return f"{labels:.0%} of labels and logits by up to {gap:.3g} differ between identical calls"
    return None
