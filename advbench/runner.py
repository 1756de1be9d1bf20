"""Run a grid cell by cell and store per-sample records; no printing, no metrics.

For each defense the clean predictions are computed once and shared by its cells.
Each cell's attack runs batch by batch; every adversarial example is verified and
re-predicted by the defense itself (never trusting the attack's own success flag),
then written as one record per sample (per epsilon for fixed-epsilon attacks).
"""

from __future__ import annotations

import datetime as dt
import math
import platform
import subprocess
import zlib
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch
from torch import nn

from . import __version__
from .attacks import Attack, AttackKind, AttackOutput, AttackTarget, make_attack
from .attacks.losses import pick_loss
from .attacks.verify import verify_adversarials
from .config import CellPlan, Grid, resolve_epsilons
from .data import Dataset
from .defenses.base import Defense, ExpectationOverTransformation, Prediction
from .errors import AdvbenchError
from .progress import Observer
from .store import RunStore
from .zoo import resolve_defense

RECORD_COLUMNS = [
    "cell", "defense", "attack", "norm", "kind", "epsilon", "sample", "label", "clean_pred", "clean_score",
    "adv_pred", "adv_score", "l2", "linf", "x_l2", "seconds", "queries", "gradients",
    "certified_l2", "access", "grad_norm",
]


class QueryCounter(nn.Module):
    """Counts the inputs a model is evaluated on, so records can report queries per sample."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.count = 0
        self.train(model.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.count += len(x)
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


def cell_seed(seed: int, cell_id: str) -> int:
    """A seed per cell that does not depend on which other cells ran before (resume-safe)."""
    return zlib.crc32(f"{seed}:{cell_id}".encode())


class ModelCache:
    """Defenses by spec, resolved once per run (defenses, transfer sources, attack generators)."""

    def __init__(self, data: Dataset, *, zoo_dir: Path | None, device: torch.device, observer: Observer) -> None:
        self.data, self.zoo_dir, self.device, self.observer = data, zoo_dir, device, observer
        self._models: dict[tuple[Any, ...], Defense] = {}

    def get(self, spec: str, weights: str | None = None, train: tuple[tuple[str, Any], ...] = ()) -> Defense:
        key = (spec, weights, train)
        if key not in self._models:
            self._models[key] = resolve_defense(spec, self.data, zoo_dir=self.zoo_dir, device=self.device,
                                                observer=self.observer, weights=Path(weights) if weights else None,
                                                train_options=dict(train))
        return self._models[key]


def plan_cells(grid: Grid, data: Dataset) -> list[tuple[CellPlan, Attack]]:
    """Expand the grid and build every attack up front, so bad options fail before any work."""
    plans = []
    attacks = [(spec, make_attack(spec.name, dict(spec.options))) for spec in grid.attacks]
    for defense in grid.defenses:
        for spec, attack in attacks:
            epsilons = resolve_epsilons(spec, attack.norm, data.info.bounds)
            plans.append((CellPlan(defense, spec, epsilons), attack))
    return plans


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def build_manifest(grid: Grid, plans: list[tuple[CellPlan, Attack]], device: torch.device) -> dict[str, Any]:
    return {
        "fingerprint": grid.fingerprint(),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds"),
        "grid": asdict(grid),
        "device": str(device),
        "versions": {"advbench": __version__, "torch": str(torch.__version__), "python": platform.python_version()},
        "git_commit": _git_commit(),
        "cells": [
            {"id": plan.id, "defense": plan.defense.id, "attack": plan.attack.id, "attack_name": plan.attack.name,
             "norm": str(attack.norm), "kind": str(attack.kind), "epsilons": list(plan.epsilons),
             "hyperparameters": attack.hyperparameters(), "eot": plan.attack.eot, "source": plan.attack.source}
            for plan, attack in plans
        ],
        "defenses": {},
    }


def run_grid(grid: Grid, data: Dataset, store: RunStore, *, zoo_dir: Path | None = None,
             observer: Observer | None = None, plans: list[tuple[CellPlan, Attack]] | None = None) -> None:
    """Run every unfinished cell of `grid` into `store` (finished cells are skipped);
    `plans` from an earlier `plan_cells(grid, data)` saves building the attacks again.

    Every batch is seeded from the grid seed, its cell and its first sample, so a cell
    split into shards (the Ray executor) gives the same records as one run here."""
    observer = observer or Observer()
    device = pick_device(grid.device)
    plans = plans if plans is not None else plan_cells(grid, data)
    manifest = open_manifest(store, grid, plans, device)
    indices, inputs, labels = data.test_subset(grid.samples, grid.seed)
    todo = [(plan, attack) for plan, attack in plans if not store.has_cell(plan.id)]
    models = ModelCache(data, zoo_dir=zoo_dir, device=device, observer=observer)
    if len(todo) < len(plans):
        observer.message(f"resuming: {len(plans) - len(todo)} of {len(plans)} cells already finished")
    with observer.task("grid cells", len(todo)) as advance_cells:
        for defense_spec in grid.defenses:
            cells = [(p, a) for p, a in todo if p.defense == defense_spec]
            if not cells:
                continue
            defense = models.get(defense_spec.spec, defense_spec.weights, defense_spec.train)
            describe_defense(manifest, store, defense_spec.id, defense, defense_spec.spec,
                             inputs[:grid.batch_size].to(device), observer)
            clean = predict_batches(defense, inputs, grid.batch_size, device, labels=labels, seed=grid.seed,
                                    seed_key=defense_spec.id)
            for plan, attack in cells:
                observer.message(f"cell {plan.id}: {attack!r}")
                source = models.get(plan.attack.source) if plan.attack.source else None
                if skip_unsupported(manifest, store, plan, attack, source or defense, data, observer):
                    advance_cells(1)
                    continue
                records = run_cell(plan, attack, defense, indices, inputs, labels, clean, batch_size=grid.batch_size,
                                   bounds=data.info.bounds, num_classes=data.info.num_classes, device=device,
                                   observer=observer, source=source, load_model=models.get,
                                   dataset=data.info.name, seed=grid.seed)
                store.write_cell(plan.id, records)
                advance_cells(1)


def open_manifest(store: RunStore, grid: Grid, plans: list[tuple[CellPlan, Attack]],
                  device: torch.device) -> dict[str, Any]:
    """The run's manifest: the stored one when resuming, else a new one (written at once)."""
    manifest = store.manifest() if (store.path / "manifest.json").exists() else build_manifest(grid, plans, device)
    store.write_manifest(manifest)
    return manifest


def describe_defense(manifest: dict[str, Any], store: RunStore, defense_id: str, defense: Defense, spec: str,
                     probe: torch.Tensor, observer: Observer) -> None:
    """Record what the report and the trust checks need to know about a defense."""
    manifest["defenses"][defense_id] = {
        "spec": spec, "stochastic": defense.stochastic, "eot_samples": defense.eot_samples,
        "reject_threshold": defense.reject_threshold, "card": defense.card,
    }
    changed = undeclared_randomness(defense, probe)
    if changed:
        manifest["defenses"][defense_id]["nondeterministic"] = changed
        observer.message(f"warning: {defense_id} is not declared stochastic but {changed}")
    store.write_manifest(manifest)


def skip_unsupported(manifest: dict[str, Any], store: RunStore, plan: CellPlan, attack: Attack, crafted_on: Defense,
                     data: Dataset, observer: Observer) -> bool:
    """Attacks written for one kind of defense (e.g. GAT's) are skipped elsewhere, with the reason."""
    reason = attack.unsupported(attack_target(crafted_on, 1, data.info.bounds, data.info.num_classes)[0])
    if reason:
        manifest.setdefault("skipped", {})[plan.id] = reason
        store.write_manifest(manifest)
        observer.message(f"skipped {plan.id}: {reason}")
    return bool(reason)


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
    return grad.flatten(1).norm(dim=1).detach().cpu()


def attack_target(defense: Defense, eot: int, bounds: tuple[float, float], num_classes: int,
                  load_model: Callable[[str], nn.Module] | None = None,
                  dataset: str = "") -> tuple[AttackTarget, list[QueryCounter]]:
    """The attack's view of a defense, with counters inside any EOT averaging so that
    queries count every model evaluation (surfaces included)."""
    counters = [QueryCounter(defense.gradient_model()), QueryCounter(defense)]
    surfaces = {name: QueryCounter(module) for name, module in defense.attack_surfaces().items()}
    models: list[nn.Module] = list(counters)
    if defense.stochastic and eot > 1:
        models = [ExpectationOverTransformation(m, eot) for m in models]

    def reject_score(x: torch.Tensor) -> torch.Tensor:
        return defense.predict(x).reject_score

    has_reject = defense.reject_threshold is not None
    target = AttackTarget(models[0], models[1], bounds, num_classes, loss=defense.attack_loss(),
                          load_model=load_model, dataset=dataset, surfaces=dict(surfaces),
                          reject_score=reject_score if has_reject else None,
                          reject_threshold=defense.reject_threshold)
    return target, counters + list(surfaces.values())


def run_cell(plan: CellPlan, attack: Attack, defense: Defense, indices: torch.Tensor, inputs: torch.Tensor,
             labels: torch.Tensor, clean: Prediction, *, batch_size: int, bounds: tuple[float, float],
             num_classes: int, device: torch.device, observer: Observer | None = None,
             source: Defense | None = None, load_model: Callable[[str], nn.Module] | None = None,
             dataset: str = "", seed: int | None = None, offset: int = 0) -> pd.DataFrame:
    """Attack one defense with one attack over all samples; one record per sample and epsilon.

    With `source`, the attack is crafted on that model and its examples are evaluated on
    `defense` (a transfer, or black-box, attack). With `seed`, each batch is seeded by its cell
    and the position `offset + start` of its first sample (shards reproduce whole cells)."""
    observer = observer or Observer()
    crafted_on = source or defense
    eot = plan.attack.eot or crafted_on.eot_samples
    target, counters = attack_target(crafted_on, eot, bounds, num_classes, load_model, dataset)
    minimum_norm = attack.kind is AttackKind.MINIMUM_NORM
    access = "transfer" if source is not None else "gradient" if attack.gradient_based else "decision"
    epsilons: list[float | None] = [None] if minimum_norm else list(plan.epsilons)
    rows: list[dict[str, Any]] = []
    with observer.task(f"{plan.defense.id} x {plan.attack.id}", len(inputs)) as advance:
        for start in range(0, len(inputs), batch_size):
            stop = start + batch_size
            x, y = inputs[start:stop].to(device), labels[start:stop].to(device)
            batch_seed(seed, plan.id, offset + start)
            grad_norms = (clean_gradient_norms(target, x, y) if access == "gradient"
                          else torch.full((len(x),), math.nan))
            for counter in counters:
                counter.count = 0
            output = attack_in_fitting_batches(attack, target, x, y, [e for e in epsilons if e is not None], observer)
            queries = sum(counter.count for counter in counters) / len(x)
            gradients = counters[0].count / len(x)  # evaluations of the gradient model (surrogate included)
            seconds = output.seconds / len(x)
            for eps, adv in zip(epsilons, output.adversarials):
                verify_adversarials(x, adv, epsilon=eps, norm=attack.norm, bounds=bounds, attack=plan.attack.id)
                rows.extend(_records(plan, attack, eps, indices[start:stop], y, x, adv, clean, start, defense,
                                     eot, seconds, queries, gradients, access, grad_norms))
            advance(len(x))
    return pd.DataFrame(rows, columns=RECORD_COLUMNS)


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
    return AttackOutput([torch.cat(advs) for advs in zip(*(p.adversarials for p in parts))],
                        sum(p.seconds for p in parts))


def _records(plan: CellPlan, attack: Attack, eps: float | None, index: torch.Tensor, y: torch.Tensor,
             x: torch.Tensor, adv: torch.Tensor, clean: Prediction, offset: int, defense: Defense, eot: int,
             seconds: float, queries: float, gradients: float, access: str,
             grad_norms: torch.Tensor) -> list[dict[str, Any]]:
    pred = defense.predict(adv, samples=eot)
    delta = (adv - x).flatten(1)
    l2, linf, x_l2 = delta.norm(dim=1).cpu(), delta.abs().amax(dim=1).cpu(), x.flatten(1).norm(dim=1).cpu()
    adv_pred = pred.labels.cpu()
    adv_score = pred.reject_score.cpu() if pred.reject_score is not None else None
    out = []
    for i in range(len(x)):
        j = offset + i
        out.append({
            "cell": plan.id, "defense": plan.defense.id, "attack": plan.attack.id, "norm": str(attack.norm),
            "kind": str(attack.kind), "epsilon": math.nan if eps is None else eps, "sample": int(index[i]),
            "label": int(y[i]), "clean_pred": int(clean.labels[j]),
            "clean_score": float(clean.reject_score[j]) if clean.reject_score is not None else math.nan,
            "adv_pred": int(adv_pred[i]),
            "adv_score": float(adv_score[i]) if adv_score is not None else math.nan,
            "l2": float(l2[i]), "linf": float(linf[i]), "x_l2": float(x_l2[i]),
            "seconds": seconds, "queries": queries, "gradients": gradients,
            "certified_l2": float(clean.certified_l2[j]) if clean.certified_l2 is not None else math.nan,
            "access": access, "grad_norm": float(grad_norms[i]),
        })
    return out
