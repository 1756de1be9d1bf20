"""Run a grid cell by cell and store per-sample records; no printing, no metrics.

For each defense the clean predictions are computed once and shared by its cells.
Each cell's attack runs batch by batch on copies of the inputs and labels; every
adversarial example is verified against the runner's own copy and re-predicted by the
defense itself (never trusting the attack's own success flag), the defense is checked
unchanged after each attack, then one record per sample (per epsilon for fixed-epsilon
attacks) is written. A cell that fails is recorded in the manifest with its reason and
the grid goes on (unless `fail_fast`); a resume reruns it.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import time
import zlib
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch
from torch import nn

from .attacks import Attack, AttackOutput, AttackTarget, make_attack
from .attacks.base import Details, concat_details
from .attacks.losses import pick_loss
from .attacks.verify import verify_adversarials
from .config import CellPlan, Grid, resolve_epsilons, subset_rule
from .contract import RECORD_COLUMNS, Access, AttackKind, CellInfo, DefenseInfo, Manifest
from .data import Dataset
from .defenses.base import Defense, ExpectationOverTransformation, Prediction, state_digest
from .errors import AdvbenchError, AttackIsolationError
from .norms import Norm, parse_norm
from .progress import Observer
from .provenance import git_commit, library_versions
from .reuse import CellIndex, content_key
from .store import RunStore, sha256_file
from .zoo import checkpoint_sha256, load_defense, plan_defense

NO_CLASS = -1  # adv_pred of an input the defense gave no finite logits for

__all__ = ["RECORD_COLUMNS", "run_grid", "plan_cells", "run_cell", "pick_device"]


class QueryCounter(nn.Module):
    """Counts the inputs a model is evaluated on, so records can report queries per sample."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.count = 0
        self.on_count: Callable[[int], None] | None = None  # progress within a batch
        self.train(model.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.count += len(x)
        if self.on_count is not None:
            self.on_count(len(x))
        return self.model(x)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise AdvbenchError(f"unknown device {name!r}: use auto, cpu or cuda[:N]") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise AdvbenchError(f"device {name} requested but CUDA is not available")
    return device


def use_threads(threads: int | None, observer: Observer) -> None:
    """Set torch's CPU threads when asked; on a machine busier than its cores, say that fewer
    threads may be faster (torch's threads then wait on each other at every barrier)."""
    if threads is not None:
        torch.set_num_threads(threads)
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load > cores and torch.get_num_threads() > 1:
        observer.message(f"hint: the load average ({load:.1f}) exceeds the {cores} cores; torch's "
                         f"{torch.get_num_threads()} threads may wait on each other: try --threads 1")


def cell_seed(seed: int, cell_id: str) -> int:
    """A seed per cell that does not depend on which other cells ran before (resume-safe)."""
    return zlib.crc32(f"{seed}:{cell_id}".encode())


class ModelCache:
    """Defenses by spec, loaded once per run (defenses, transfer sources, attack generators).
    Never trains: missing zoo entries are trained by the front door before the run."""

    def __init__(self, data: Dataset, *, zoo_dir: Path | None, device: torch.device, observer: Observer) -> None:
        self.data, self.zoo_dir, self.device, self.observer = data, zoo_dir, device, observer
        self._models: dict[tuple[Any, ...], Defense] = {}
        self.checkpoints: dict[tuple[Any, ...], str | None] = {}

    def get(self, spec: str, weights: str | None = None, train: tuple[tuple[str, Any], ...] = ()) -> Defense:
        key = (spec, weights, train)
        if key not in self._models:
            plan = plan_defense(spec, self.data.info, zoo_dir=self.zoo_dir, weights=weights,
                                train_options=dict(train))
            self._models[key] = load_defense(plan, self.data, zoo_dir=self.zoo_dir, device=self.device)
            self.checkpoints[key] = (checkpoint_sha256(plan.entry, self.zoo_dir) if plan.entry
                                     else sha256_file(plan.weights) if plan.weights else None)
        return self._models[key]


def plan_cells(grid: Grid, data: Dataset) -> list[tuple[CellPlan, Attack]]:
    """Expand the grid and build every attack up front, so bad options fail before any work."""
    if grid.samples is not None and grid.samples > len(data.test_y):
        raise AdvbenchError(f"{grid.samples} samples requested but {data.info.name} has only {len(data.test_y)} "
                            "test samples")
    plans = []
    attacks = [(spec, make_attack(spec.name, dict(spec.options))) for spec in grid.attacks]
    for defense in grid.defenses:
        for spec, attack in attacks:
            if not spec.applies_to(defense):
                continue
            epsilons = resolve_epsilons(spec, attack.norm, data.info.bounds, data.info.name)
            plans.append((CellPlan(defense, spec, epsilons), attack))
    ids = [plan.id for plan, _ in plans]
    if len(set(ids)) != len(ids):
        clash = next(i for i in ids if ids.count(i) > 1)
        raise AdvbenchError(f"two cells would share the id {clash!r}; give a defense or attack a distinct label")
    return plans


def cell_info(plan: CellPlan, attack: Attack) -> CellInfo:
    return CellInfo(id=plan.id, defense=plan.defense.id, attack=plan.attack.id, attack_name=plan.attack.name,
                    norm=parse_norm(attack.norm), kind=AttackKind(attack.kind), epsilons=tuple(plan.epsilons),
                    hyperparameters=attack.hyperparameters(), eot=plan.attack.eot, source=plan.attack.source)


def build_manifest(grid: Grid, plans: list[tuple[CellPlan, Attack]], device: torch.device) -> Manifest:
    return Manifest(
        fingerprint=grid.fingerprint(), created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds"),
        grid=asdict(grid), device=str(device), versions=library_versions(), git_commit=git_commit(),
        threads=torch.get_num_threads(),
        cells=[cell_info(plan, attack) for plan, attack in plans],
    )


def open_manifest(store: RunStore, grid: Grid, plans: list[tuple[CellPlan, Attack]], device: torch.device,
                  observer: Observer) -> Manifest:
    """The run's manifest: a new one (written at once), or the stored one when resuming,
    with every finished cell's records checked against its checksum (damaged cells rerun)."""
    if not (store.path / "manifest.json").exists():
        manifest = build_manifest(grid, plans, device)
        store.write_manifest(manifest)
        return manifest
    manifest = store.manifest()
    if manifest.legacy:
        raise AdvbenchError(f"run {store.run_id} was written before run schema 2 (no record checksums) and cannot "
                            "be resumed; start a new run")
    if manifest.fingerprint != grid.fingerprint():
        raise AdvbenchError(f"run {store.run_id} is a run of another grid; it cannot be resumed with this one")
    for cell_id, checksum in list(manifest.finished.items()):
        problem = store.cell_problem(cell_id, checksum)
        if problem:
            observer.message(f"warning: cell {cell_id}: {problem}; it is run again")
            del manifest.finished[cell_id]
    store.write_manifest(manifest)
    return manifest


def describe_defense(manifest: Manifest, defense_id: str, defense: Defense, spec: str, probe: torch.Tensor,
                     observer: Observer, checkpoint: str | None = None, num_classes: int | None = None) -> bool:
    """Record what the report and the trust checks need to know about a defense; finished cells
    of an earlier model (its weights changed since they ran) are dropped so that they rerun.
    A model that fails on the probe inputs, or gives other than `num_classes` outputs, is refused.
    Returns whether the weights changed (the caller drops the defense's unfinished parts too)."""
    check_outputs(defense, defense_id, probe, num_classes)
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
    changed = undeclared_randomness(defense, probe)
    if changed:
        info.nondeterministic = changed
        observer.message(f"warning: {defense_id} is not declared stochastic but {changed}")
    manifest.defenses[defense_id] = info
    return earlier is not None and earlier.weights_sha256 not in (None, digest)


def check_outputs(defense: Defense, defense_id: str, probe: torch.Tensor, num_classes: int | None) -> None:
    """One line naming the defense when it cannot classify the data: it raises on a batch of
    test inputs, or its logits are not one per class."""
    try:
        with torch.no_grad():
            logits = defense(probe)
    except Exception as exc:  # noqa: BLE001 - user models fail in every way; the cause goes in one line
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise AdvbenchError(f"defense {defense_id} fails on a batch of test inputs of shape {tuple(probe.shape)}: "
                            f"{type(exc).__name__}{': ' + message if message else ''}") from None
    if num_classes is not None and (logits.ndim != 2 or logits.shape[1] != num_classes):
        raise AdvbenchError(f"defense {defense_id} gives outputs of shape {tuple(logits.shape)} for "
                            f"{len(probe)} inputs, but the data has {num_classes} classes (expected "
                            f"[{len(probe)}, {num_classes}] logits)")


def skip_unsupported(manifest: Manifest, plan: CellPlan, attack: Attack, crafted_on: Defense, data: Dataset,
                     observer: Observer) -> bool:
    """Attacks written for one kind of defense (e.g. GAT's) are skipped elsewhere, with the reason."""
    reason = attack.unsupported(attack_target(crafted_on, 1, data.info.bounds, data.info.num_classes)[0])
    if reason:
        manifest.skipped[plan.id] = reason
        observer.message(f"skipped {plan.id}: {reason}")
    return bool(reason)


def run_grid(grid: Grid, data: Dataset, store: RunStore, *, zoo_dir: Path | None = None,
             observer: Observer | None = None, plans: list[tuple[CellPlan, Attack]] | None = None,
             fail_fast: bool = False, reuse: bool = True) -> Manifest:
    """Run every unfinished cell of `grid` into `store` (verified finished cells are kept);
    `plans` from an earlier `plan_cells(grid, data)` saves building the attacks again.

    Every batch is seeded from the grid seed, its cell and its first sample, so a cell
    split into shards (the Ray executor) gives the same records as one run here. A cell
    that fails is recorded in `manifest.refused` and the grid goes on, unless `fail_fast`.
    With `reuse`, a cell an earlier run under the same results directory computed with the
    same content key (`advbench.reuse`) is copied from it instead of being run."""
    observer = observer or Observer()
    device = pick_device(grid.device)
    plans = plans if plans is not None else plan_cells(grid, data)
    with store.lock():
        manifest = open_manifest(store, grid, plans, device, observer)
        indices, inputs, labels = grid_samples(grid, data)
        models = ModelCache(data, zoo_dir=zoo_dir, device=device, observer=observer)
        earlier = CellIndex(store.path.parent, exclude=store.path) if reuse else None
        done = len(manifest.finished) + len(manifest.skipped)
        if done:
            observer.message(f"resuming: {done} of {len(plans)} cells already finished")
        with observer.task("grid cells", len(plans) - done) as advance_cells:
            for defense_spec in grid.defenses:
                own = [(p, a) for p, a in plans if p.defense == defense_spec and p.id not in manifest.skipped]
                if all(p.id in manifest.finished for p, _ in own):
                    continue
                try:
                    defense = models.get(defense_spec.spec, defense_spec.weights, defense_spec.train)
                    if describe_defense(manifest, defense_spec.id, defense, defense_spec.spec,
                                        inputs[:grid.batch_size].to(device), observer,
                                        models.checkpoints[(defense_spec.spec, defense_spec.weights,
                                                            defense_spec.train)], data.info.num_classes):
                        for plan, _ in own:  # batches of the earlier weights must not join the new ones
                            store.drop_parts(plan.id)
                except AdvbenchError as exc:
                    _refuse_all(manifest, store, own, exc, observer, advance_cells)
                    if fail_fast:
                        raise
                    continue
                store.write_manifest(manifest)
                todo = []
                for plan, attack in own:
                    if plan.id in manifest.finished:
                        continue
                    try:
                        source = models.get(plan.attack.source) if plan.attack.source else None
                        if skip_unsupported(manifest, plan, attack, source or defense, data, observer):
                            store.write_manifest(manifest)
                            advance_cells(1)
                            continue
                        manifest.content_keys[plan.id] = content_key(plan, attack, grid, data.info.name, indices,
                                                                     manifest, defense, source)
                        if earlier is not None and reuse_earlier_cell(manifest, store, plan.id, earlier,
                                                                      grid.save_adversarials, observer):
                            advance_cells(1)
                            continue
                        todo.append((plan, attack, source))
                    except AdvbenchError as exc:
                        _refuse(manifest, store, plan, exc, observer)
                        advance_cells(1)
                        if fail_fast:
                            raise
                if not todo:
                    continue
                announce_estimate(defense_spec.id, defense, [(p, a) for p, a, _ in todo], inputs, labels, data,
                                  grid.batch_size, device, observer)
                try:
                    started = time.perf_counter()
                    clean = clean_predictions(defense, defense_spec.id, inputs, labels, grid, device)
                    manifest.timings[f"clean {defense_spec.id}"] = round(time.perf_counter() - started, 3)
                except AdvbenchError as exc:
                    _refuse_all(manifest, store, [(p, a) for p, a, _ in todo], exc, observer, advance_cells)
                    if fail_fast:
                        raise
                    continue
                for plan, attack, source in todo:
                    try:
                        observer.message(f"cell {plan.id}: {attack!r}")
                        started = time.perf_counter()
                        parts = CellParts(store, plan, attack, indices, grid.batch_size, grid.save_adversarials)
                        run_cell(plan, attack, defense, indices, inputs, labels, clean, batch_size=grid.batch_size,
                                 bounds=data.info.bounds, num_classes=data.info.num_classes, device=device,
                                 observer=observer, source=source, load_model=models.get, dataset=data.info.name,
                                 seed=grid.seed, parts=parts)
                        if grid.save_adversarials:
                            manifest.adversarials[plan.id] = store.write_adversarials(
                                plan.id, saved_adversarials(plan, attack, indices, parts.adversarials()))
                        manifest.finished[plan.id] = store.merge_parts(plan.id, parts.starts)
                        manifest.timings[plan.id] = round(time.perf_counter() - started, 3)
                        manifest.refused.pop(plan.id, None)
                        store.write_manifest(manifest)
                        store.drop_parts(plan.id)
                    except AdvbenchError as exc:
                        _refuse(manifest, store, plan, exc, observer)
                        if fail_fast:
                            raise
                    advance_cells(1)
    return manifest


def reuse_earlier_cell(manifest: Manifest, store: RunStore, cell_id: str, earlier: CellIndex,
                       need_adversarials: bool, observer: Observer) -> bool:
    """Copy the cell from an earlier run with the same content key, if one verifies; an
    earlier copy that does not (damaged, edited, unreadable) is named in a warning and the
    cell is computed again, never failed."""
    found = earlier.find(manifest.content_keys[cell_id], cell_id, need_adversarials, observer.message)
    if found is None:
        return False
    try:
        adversarials = (store.copy_adversarials(found.store, cell_id, found.adversarials) if found.adversarials
                        else None)
        checksum = store.copy_cell(found.store, cell_id, found.checksum)
    except (AdvbenchError, OSError) as exc:  # changed between the check and the copy
        observer.message(f"warning: cell {cell_id}: the copy in earlier run {found.store.run_id} is not reused: "
                         f"{exc}; it is computed again")
        return False
    if adversarials is not None:
        manifest.adversarials[cell_id] = adversarials
    manifest.finished[cell_id] = checksum
    manifest.reused[cell_id] = found.store.run_id
    manifest.refused.pop(cell_id, None)
    store.write_manifest(manifest)
    observer.message(f"cell {cell_id}: reused from run {found.store.run_id} (same data, samples, weights and "
                     "attack settings; --fresh reruns it)")
    return True


def saved_adversarials(plan: CellPlan, attack: Attack, indices: torch.Tensor,
                       batches: list[torch.Tensor]) -> dict[str, Any]:
    """What `--save-adversarials` keeps per cell: sample ids, epsilons (NaN for a minimum-norm
    attack) and the verified adversarial inputs, [epsilons, samples, ...] on the [0,1] scale."""
    epsilons = [math.nan] if attack.kind is AttackKind.MINIMUM_NORM else list(plan.epsilons)
    return {"cell": plan.id, "samples": indices.clone().long(), "epsilons": torch.tensor(epsilons),
            "adversarials": torch.cat(batches, dim=1)}


def _refuse_all(manifest: Manifest, store: RunStore, cells: list[tuple[CellPlan, Attack]], error: Exception,
                observer: Observer, advance: Callable[[int], None]) -> None:
    for plan, _ in cells:
        if plan.id not in manifest.finished:
            _refuse(manifest, store, plan, error, observer)
            advance(1)


def _refuse(manifest: Manifest, store: RunStore, plan: CellPlan, error: Exception, observer: Observer) -> None:
    manifest.refused[plan.id] = str(error)
    store.write_manifest(manifest)
    observer.message(f"cell {plan.id} failed: {error}")


def clean_predictions(defense: Defense, defense_id: str, inputs: torch.Tensor, labels: torch.Tensor, grid: Grid,
                      device: torch.device, offset: int = 0) -> Prediction:
    """The defense's clean predictions (seeded per batch), refusing non-finite logits."""
    clean = predict_batches(defense, inputs, grid.batch_size, device, labels=labels, seed=grid.seed,
                            seed_key=defense_id, offset=offset)
    bad = ~torch.isfinite(clean.logits).all(dim=1)
    if bad.any():
        raise AdvbenchError(f"{defense_id} returned non-finite logits (NaN or inf) on {int(bad.sum())} of "
                            f"{len(bad)} clean inputs; its predictions cannot be evaluated")
    return clean


def grid_samples(grid: Grid, data: Dataset) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The test points a grid evaluates: (indices, inputs, labels)."""
    return data.test_subset(grid.samples, grid.seed, first=subset_rule(grid) == "first")


def batch_seed(seed: int | None, key: str, start: int) -> None:
    """Seed torch for the batch starting at sample `start` of `key` (a cell or a defense)."""
    if seed is not None:
        torch.manual_seed(cell_seed(seed, f"{key}@{start}"))


def predict_batches(defense: Defense, inputs: torch.Tensor, batch_size: int, device: torch.device,
                    samples: int | None = None, labels: torch.Tensor | None = None,
                    seed: int | None = None, seed_key: str = "", offset: int = 0) -> Prediction:
    """Clean predictions in batches; with `labels`, also the defense's certified radii (if any).
    With `seed`, each batch is seeded by `seed_key` (the defense) and its first sample's position
    `offset + i`, so a shard of the inputs gets the same predictions as the whole."""
    parts = []
    for i in range(0, len(inputs), batch_size):
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


def undeclared_randomness(defense: Defense, x: torch.Tensor) -> str | None:
    """For a defense not declared stochastic: how two identical calls disagree, if they do."""
    if defense.stochastic:
        return None
    first, second = defense.predict(x), defense.predict(x)
    labels = (first.labels != second.labels).float().mean().item()
    gap = (first.logits - second.logits).abs().max().item()
    scale = first.logits.abs().max().item() or 1.0
    if labels > 0 or gap > 1e-3 * scale:
        return f"{labels:.0%} of labels and logits by up to {gap:.3g} differ between identical calls"
    return None


def clean_gradient_norms(target: AttackTarget, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """L2 norm of the attack loss's input gradient at each clean input (dead-gradient check)."""
    loss_fn, _ = pick_loss("auto", target.loss)
    x = x.clone().requires_grad_(True)
    with torch.enable_grad():
        loss = loss_fn(target.gradient_model(x), y)
        (grad,) = torch.autograd.grad(loss.sum(), x, allow_unused=True)
    if grad is None:
        return torch.zeros(len(x))
    return Norm.L2.of(grad).detach().cpu()


class WithRejectScore(nn.Module):
    """[logits | reject score] in one pass: what reject-aware objectives differentiate (on
    the gradient model) or read (on the real decision)."""

    def __init__(self, defense: Defense, model: nn.Module) -> None:
        super().__init__()
        self.defense, self.model = defense, model
        self.train(model.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        return torch.cat([logits, self.defense.reject_score(x, logits)[:, None]], dim=1)


def attack_target(defense: Defense, eot: int, bounds: tuple[float, float], num_classes: int,
                  load_model: Callable[[str], nn.Module] | None = None,
                  dataset: str = "") -> tuple[AttackTarget, list[QueryCounter]]:
    """The attack's view of a defense, with counters inside any EOT averaging so that
    queries count every model evaluation (surfaces included)."""
    counters = [QueryCounter(defense.gradient_model()), QueryCounter(defense)]
    surfaces = {name: QueryCounter(module) for name, module in defense.attack_surfaces().items()}
    has_reject = defense.reject_threshold is not None
    models: list[nn.Module] = list(counters)
    if has_reject:
        models += [WithRejectScore(defense, counter) for counter in counters]
    averaged = defense.stochastic and eot > 1
    if averaged:
        models = [ExpectationOverTransformation(m, eot, batched=defense.eot_in_one_batch) for m in models]

    def reject_score(x: torch.Tensor) -> torch.Tensor:
        return defense.predict(x).reject_score

    target = AttackTarget(models[0], models[1], bounds, num_classes, loss=defense.attack_loss(),
                          load_model=load_model, dataset=dataset, surfaces=dict(surfaces),
                          reject_score=reject_score if has_reject else None,
                          reject_threshold=defense.reject_threshold,
                          joint_gradient_model=models[2] if has_reject else None,
                          joint_decision_model=models[3] if has_reject else None,
                          eot=eot if averaged else 1, stochastic=defense.stochastic)
    return target, counters + list(surfaces.values())


def run_cell(plan: CellPlan, attack: Attack, defense: Defense, indices: torch.Tensor, inputs: torch.Tensor,
             labels: torch.Tensor, clean: Prediction, *, batch_size: int, bounds: tuple[float, float],
             num_classes: int, device: torch.device, observer: Observer | None = None,
             source: Defense | None = None, load_model: Callable[[str], nn.Module] | None = None,
             dataset: str = "", seed: int | None = None, offset: int = 0,
             parts: "CellParts | None" = None) -> pd.DataFrame:
    """Attack one defense with one attack over all samples; one record per sample and epsilon.

    With `source`, the attack is crafted on that model and its examples are evaluated on
    `defense` (a transfer, or black-box, attack). With `seed`, each batch is seeded by its cell
    and the position `offset + start` of its first sample (shards reproduce whole cells).
    With `parts`, each finished batch is written as a part (with its verified adversarial
    inputs when they are kept) and batches whose parts are already on disk are skipped; the
    returned records are then those of the batches run in this call."""
    observer = observer or Observer()
    crafted_on = source or defense
    eot = plan.attack.eot or crafted_on.eot_samples
    minimum_norm = attack.kind is AttackKind.MINIMUM_NORM
    access = Access.TRANSFER if source is not None else attack.access
    epsilons: list[float | None] = [None] if minimum_norm else list(plan.epsilons)
    guards = [StateGuard(m) for m in {id(m): m for m in (defense, crafted_on)}.values()]
    rows: list[dict[str, Any]] = []
    evaluations_per_input = attack.expected_evaluations() * max(1, len(epsilons)) * max(1, eot)
    try:
        with observer.task(f"{plan.defense.id} x {plan.attack.id}", len(inputs)) as advance:
            for start in range(0, len(inputs), batch_size):
                stop = start + batch_size
                if parts is not None and parts.finished(offset + start, offset + min(stop, len(inputs))):
                    advance(min(batch_size, len(inputs) - start))  # kept from an interrupted attempt
                    continue
                credit = BatchCredit(advance, min(batch_size, len(inputs) - start), evaluations_per_input)
                # a fresh target per batch: a gradient model may keep state between an attack's steps
                # (warm-started inference), and no batch may see another's (shards reproduce cells)
                target, counters = attack_target(crafted_on, eot, bounds, num_classes, load_model, dataset)
                for counter in counters:
                    counter.on_count = credit
                # the runner's own copies: the attack gets clones, so nothing it does to its
                # inputs or labels reaches verification, the records or the next cell
                x, y = inputs[start:stop].to(device).clone(), labels[start:stop].to(device).clone()
                batch_seed(seed, plan.id, offset + start)
                grad_norms = (clean_gradient_norms(target, x, y) if access is Access.GRADIENT
                              else torch.full((len(x),), math.nan))
                for counter in counters:
                    counter.count = 0
                output = attack_in_fitting_batches(attack, target, x.clone(), y.clone(),
                                                   [e for e in epsilons if e is not None], observer)
                for guard in guards:
                    guard.check(plan.attack.id)
                queries = sum(counter.count for counter in counters) / len(x)
                gradients = counters[0].count / len(x)  # evaluations of the gradient model (surrogate included)
                seconds = output.seconds / len(x)
                details = output.details or [{} for _ in output.adversarials]
                batch_rows: list[dict[str, Any]] = []
                for eps, adv, detail in zip(epsilons, output.adversarials, details):
                    verify_adversarials(x, adv, epsilon=eps, norm=attack.norm, bounds=bounds, attack=plan.attack.id)
                    batch_rows.extend(_records(plan, attack, eps, indices[start:stop], y, x, adv, clean, start,
                                               defense, eot, seconds, queries, gradients, access, grad_norms,
                                               observer, detail))
                if parts is not None:
                    parts.write(offset + start, pd.DataFrame(batch_rows, columns=RECORD_COLUMNS),
                                torch.stack([a.detach().cpu() for a in output.adversarials]) if parts.keep else None)
                rows.extend(batch_rows)
                credit.finish()
    finally:  # whatever the attack did or raised, the next cell gets the model as this one found it
        for guard in guards:
            guard.restore()
    return pd.DataFrame(rows, columns=RECORD_COLUMNS)


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


class BatchCredit:
    """Moves a cell's progress bar while a batch is attacked: each model evaluation of k inputs
    is worth k / (evaluations the attack expects per input) samples, never the whole batch
    before it is done; `finish` credits the rest."""

    def __init__(self, advance: Callable[[float], None], size: int, evaluations_per_input: int) -> None:
        self.advance, self.size, self.per_input, self.credited = advance, size, evaluations_per_input, 0.0

    def __call__(self, inputs: int) -> None:
        step = min(inputs / self.per_input, 0.95 * self.size - self.credited)
        if step > 0:
            self.credited += step
            self.advance(step)

    def finish(self) -> None:
        self.advance(self.size - self.credited)
        self.credited = float(self.size)


def seconds_per_evaluation(defense: Defense, x: torch.Tensor, y: torch.Tensor, data: Dataset) -> float:
    """Wall seconds of one gradient evaluation per input on this machine (forward and backward),
    measured on a whole batch `x` (a defense's cost per input can fall steeply with batch size),
    after a first call on it (caches filled; a warm-started gradient model's later steps cost less
    than its first)."""
    target, _ = attack_target(defense, 1, data.info.bounds, data.info.num_classes)
    clean_gradient_norms(target, x, y)
    start = time.perf_counter()
    clean_gradient_norms(target, x, y)
    return (time.perf_counter() - start) / max(1, len(x))


def announce_estimate(defense_id: str, defense: Defense, cells: list[tuple[CellPlan, Attack]], inputs: torch.Tensor,
                      labels: torch.Tensor, data: Dataset, batch_size: int, device: torch.device,
                      observer: Observer) -> None:
    """Say up front when a defense's cells will take long (timed on one batch; batches are
    seeded, so this costs no reproducibility)."""
    probe = slice(0, min(batch_size, len(inputs)))
    try:
        seconds = seconds_per_evaluation(defense, inputs[probe].to(device), labels[probe].to(device), data)
        message = estimate_message(defense_id, seconds, cells, len(inputs), device, defense.eot_samples)
    except Exception:  # noqa: BLE001 - an estimate must never stop a run
        message = None
    if message:
        observer.message(message)


def estimate_message(defense_id: str, seconds: float, cells: list[tuple[CellPlan, Attack]], samples: int,
                     device: torch.device, eot: int, threshold: float = 300.0) -> str | None:
    """"eabs on cpu: about 80 min for 2 cells (24 s per sample with pgd-l2); try --samples 20" when
    a defense's remaining cells will take longer than `threshold` seconds, else None."""
    per_sample = {plan.attack.id: seconds * attack.expected_evaluations() * max(1, len(plan.epsilons))
                  * max(1, plan.attack.eot or eot) for plan, attack in cells}
    total = samples * sum(per_sample.values())
    if total < threshold:
        return None
    slowest = max(per_sample, key=per_sample.get)
    suggestion = max(10, int(samples * threshold / total) // 10 * 10)
    return (f"{defense_id} on {device.type}: about {_duration(total)} for {len(cells)} cell(s) of {samples} samples "
            f"({per_sample[slowest]:.1f} s per sample with {slowest}); for a first look try --samples {suggestion}")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class StateGuard:
    """A model's exact state when a cell starts: parameters, buffers and each submodule's
    train/eval flag. An attack must leave all of it alone; `check` (after every batch) says
    when it did not, and `restore` puts everything back, so a violation costs only its cell and
    never the next one (e.g. BatchNorm statistics updated by forwards in training mode)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.digest = state_digest(model)
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.modes = {name: module.training for name, module in model.named_modules()}

    def check(self, attack: str) -> None:
        """Raise `AttackIsolationError` (after restoring the model) when `attack` changed it."""
        training = [name or "the model" for name, module in self.model.named_modules()
                    if module.training and not self.modes.get(name, False)]
        changed = state_digest(self.model) != self.digest
        if training or changed:
            self.restore()
        if training:
            raise AttackIsolationError(f"{attack} left {training[0]} in training mode (it changes predictions); "
                                       "this cell's records are discarded")
        if changed:
            raise AttackIsolationError(f"{attack} changed the defense's weights or buffers; this cell's records are "
                                       "discarded")

    def restore(self) -> None:
        with torch.no_grad():
            self.model.load_state_dict(self.state)
        for name, module in self.model.named_modules():
            module.training = self.modes.get(name, module.training)


def is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.cuda.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and ("out of memory" in str(error) or "can't allocate memory" in str(error)))


def attack_in_fitting_batches(attack: Attack, target: AttackTarget, x: torch.Tensor, y: torch.Tensor,
                              epsilons: list[float], observer: Observer) -> AttackOutput:
    """Run the attack on the batch; when it runs out of memory, on each half in turn (and so
    on down to single inputs), with a warning, instead of failing a long grid."""
    try:
        return attack(target, x, y, epsilons)
    except Exception as error:  # noqa: BLE001 - only out-of-memory errors are handled
        if not is_out_of_memory(error) or len(x) == 1:
            raise
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    half = (len(x) + 1) // 2
    observer.message(f"warning: out of memory on a batch of {len(x)}; retrying in batches of {half}")
    parts = [attack_in_fitting_batches(attack, target, x[i:i + half], y[i:i + half], epsilons, observer)
             for i in range(0, len(x), half)]
    details = [concat_details(list(d)) for d in zip(*(p.details for p in parts))]
    return AttackOutput([torch.cat(advs) for advs in zip(*(p.adversarials for p in parts))],
                        sum(p.seconds for p in parts), details)


def _records(plan: CellPlan, attack: Attack, eps: float | None, index: torch.Tensor, y: torch.Tensor,
             x: torch.Tensor, adv: torch.Tensor, clean: Prediction, offset: int, defense: Defense, eot: int,
             seconds: float, queries: float, gradients: float, access: Access,
             grad_norms: torch.Tensor, observer: Observer, details: Details) -> list[dict[str, Any]]:
    pred = defense.predict(adv, samples=eot)
    delta = (adv - x).flatten(1)
    l2, linf, x_l2 = Norm.L2.of(delta).cpu(), Norm.LINF.of(delta).cpu(), Norm.L2.of(x).cpu()
    adv_pred = pred.labels.cpu()
    broken = ~torch.isfinite(pred.logits).all(dim=1).cpu()
    if broken.any():  # no class at all: counted as a successful attack, never as robust
        adv_pred[broken] = NO_CLASS
        observer.message(f"warning: {plan.defense.id} returned non-finite logits on {int(broken.sum())} "
                         f"adversarial input(s) of {plan.attack.id}; they count as misclassified")
    adv_score = pred.reject_score.cpu() if pred.reject_score is not None else None
    out = []
    for i in range(len(x)):
        j = offset + i
        out.append({
            "cell": plan.id, "defense": plan.defense.id, "attack": plan.attack.id, "norm": parse_norm(attack.norm).value,
            "kind": AttackKind(attack.kind).value, "epsilon": math.nan if eps is None else eps, "sample": int(index[i]),
            "label": int(y[i]), "clean_pred": int(clean.labels[j]),
            "clean_score": float(clean.reject_score[j]) if clean.reject_score is not None else math.nan,
            "adv_pred": int(adv_pred[i]),
            "adv_score": float(adv_score[i]) if adv_score is not None else math.nan,
            "l2": float(l2[i]), "linf": float(linf[i]), "x_l2": float(x_l2[i]),
            "seconds": seconds, "queries": queries, "gradients": gradients,
            "certified_l2": float(clean.certified_l2[j]) if clean.certified_l2 is not None else math.nan,
            "access": access.value, "grad_norm": float(grad_norms[i]),
            "component": "", "loss_first": math.nan, "loss_best": math.nan, "loss_last": math.nan,
            "best_step": math.nan,
        })
        for column, values in details.items():
            out[-1][column] = values[i] if isinstance(values, list) else float(values[i])
    return out
