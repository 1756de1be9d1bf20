"""One cell: attack one defense with one attack, batch by batch, and write its records.

Each batch's attack runs on copies of the inputs and labels; every adversarial example is
verified against the runner's own copy and re-predicted by the defense itself (never
trusting the attack's own success flag), the defense is checked unchanged after each batch,
then one record per sample (per epsilon for fixed-epsilon attacks) is kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import pandas as pd
import torch
from torch import nn

from ..attacks import Attack, AttackOutput, AttackTarget
from ..attacks.base import Details, concat_details
from ..attacks.verify import verify_adversarials
from ..config import CellPlan
from ..contract import RECORD_COLUMNS, Access, AttackKind
from ..defenses.base import Defense, Prediction
from ..norms import Norm, parse_norm
from ..progress import Observer
from .estimate import BatchCredit
from .guard import StateGuard
from .parts import CellParts
from .predict import batch_seed
from .target import SharedCleanGradients, attack_target

NO_CLASS = -1  # adv_pred of an input the defense gave no finite logits for


def run_cell(plan: CellPlan, attack: Attack, defense: Defense, indices: torch.Tensor, inputs: torch.Tensor,
             labels: torch.Tensor, clean: Prediction, *, batch_size: int, bounds: tuple[float, float],
             num_classes: int, device: torch.device, observer: Observer | None = None,
             source: Defense | None = None, load_model: Callable[[str], nn.Module] | None = None,
             dataset: str = "", seed: int | None = None, offset: int = 0,
             parts: CellParts | None = None, carry_examples: bool = False,
             clean_gradients: SharedCleanGradients | None = None) -> pd.DataFrame:
    """Attack one defense with one attack over all samples; one record per sample and epsilon.

    With `source`, the attack is crafted on that model and its examples are evaluated on
    `defense` (a transfer, or black-box, attack). With `seed`, each batch is seeded by its cell
    and the position `offset + start` of its first sample (shards reproduce whole cells).
    With `parts`, each finished batch is written as a part (with its verified adversarial
    inputs when they are kept) and batches whose parts are already on disk are skipped; the
    returned records are then those of the batches run in this call. With `carry_examples`, a
    sample beaten at a smaller epsilon keeps that example where a larger one failed (`attack_at_epsilons`).
    `clean_gradients` holds the defense's clean gradient norms shared with its other cells."""
    observer = observer or Observer()
    crafted_on = source or defense
    eot = plan.attack.eot or crafted_on.eot_samples
    setting = CellSetting(plan, attack, defense, crafted_on, eot, Access.TRANSFER if source is not None else attack.access,
                          [None] if attack.kind is AttackKind.MINIMUM_NORM else list(plan.epsilons), bounds,
                          num_classes, device, observer, load_model, dataset, seed, carry_examples,
                          clean_gradients or SharedCleanGradients(defense))
    guards = [StateGuard(m) for m in {id(m): m for m in (defense, crafted_on)}.values()]
    rows: list[dict[str, Any]] = []
    try:
        with observer.task(f"{plan.defense.id} x {plan.attack.id}", len(inputs)) as advance:
            for start in range(0, len(inputs), batch_size):
                stop = min(start + batch_size, len(inputs))
                if parts is not None and parts.finished(offset + start, offset + stop):
                    advance(stop - start)  # kept from an interrupted attempt
                    continue
                credit = BatchCredit(advance, stop - start, setting.evaluations_per_input)
                # the runner's own copies: the attack gets clones, so nothing it does to its
                # inputs or labels reaches verification, the records or the next cell
                x, y = inputs[start:stop].to(device).clone(), labels[start:stop].to(device).clone()
                batch_rows, adversarials = attack_batch(setting, x, y, indices[start:stop], clean, start,
                                                        offset + start, credit, guards)
                if parts is not None:
                    parts.write(offset + start, pd.DataFrame(batch_rows, columns=RECORD_COLUMNS),
                                torch.stack([a.detach().cpu() for a in adversarials]) if parts.keep else None)
                rows.extend(batch_rows)
                credit.finish()
        for guard in guards:  # once per cell, the full digest (it also sees writes that bypass autograd)
            guard.check(plan.attack.id, full=True)
    finally:  # whatever the attack did or raised, the next cell gets the model as this one found it
        for guard in guards:
            guard.restore()
    return pd.DataFrame(rows, columns=RECORD_COLUMNS)


@dataclass(frozen=True)
class CellSetting:
    """What every batch of a cell shares."""

    plan: CellPlan
    attack: Attack
    defense: Defense  # judges the examples
    crafted_on: Defense  # the examples are crafted on it (the defense, or a transfer source)
    eot: int
    access: Access
    epsilons: list[float | None]  # [None] for a minimum-norm attack
    bounds: tuple[float, float]
    num_classes: int
    device: torch.device
    observer: Observer
    load_model: Callable[[str], nn.Module] | None
    dataset: str
    seed: int | None
    carry_examples: bool
    clean_gradients: SharedCleanGradients  # of `defense`, by batch position, shared with its other cells

    @property
    def evaluations_per_input(self) -> int:
        return self.attack.evaluations_on(self.crafted_on.stochastic, self.eot) * max(1, len(self.epsilons))


def attack_batch(setting: CellSetting, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor, clean: Prediction,
                 start: int, position: int, credit: BatchCredit,
                 guards: list[StateGuard]) -> tuple[list[dict[str, Any]], list[torch.Tensor]]:
    """One batch of a cell (its first sample at `start` of `clean`, at `position` in the whole
    cell, which seeds it): attacked, checked, verified and re-predicted into records."""
    plan = setting.plan
    # a fresh target per batch: a gradient model may keep state between an attack's steps
    # (warm-started inference), and no batch may see another's (shards reproduce cells)
    target, counters = attack_target(setting.crafted_on, setting.eot, setting.bounds, setting.num_classes,
                                     setting.load_model, setting.dataset, transfer=setting.access is Access.TRANSFER)
    for counter in counters:
        counter.on_count = credit
    batch_seed(setting.seed, plan.id, position)
    grad_norms = (setting.clean_gradients(target, x, y, position) if setting.access is Access.GRADIENT
                  else torch.full((len(x),), math.nan))
    for counter in counters:
        counter.count = 0

    def check_defense() -> None:
        for guard in guards:
            guard.check(plan.attack.id)

    found = attack_at_epsilons(setting, target, x, y, check_defense)
    cost = BatchCost(found.seconds / len(x), sum(counter.count for counter in counters) / len(x),
                     counters[0].count / len(x))  # gradients: evaluations of the gradient model (surrogate included)
    rows: list[dict[str, Any]] = []
    for eps, adv, detail, pred, found_at in zip(setting.epsilons, found.adversarials, found.details,
                                                found.predictions, found.found_at):
        rows.extend(batch_records(setting, eps, index, y, x, adv, clean, start, cost, grad_norms, detail, pred,
                                  found_at))
    return rows, found.adversarials


@dataclass
class FoundExamples:
    """A batch's verified examples at each epsilon of the cell, with the defense's prediction of
    each and the epsilon each example was found at."""

    adversarials: list[torch.Tensor]
    details: list[Details]
    predictions: list[Prediction]
    found_at: list[torch.Tensor]
    seconds: float


def attack_at_epsilons(setting: CellSetting, target: AttackTarget, x: torch.Tensor, y: torch.Tensor,
                       check_defense: Callable[[], None]) -> FoundExamples:
    """The attack at every epsilon of the cell (in one call: the attack may batch them), each
    example verified and judged by the defense; `check_defense` runs before the defense judges.

    With `carry_examples` (fixed-epsilon attacks, epsilons in increasing order), a sample the
    defense got wrong (and accepted, where it has a reject option) at a smaller epsilon keeps that
    example wherever the attack at a larger epsilon did not beat it: the smaller ball's example lies
    in the larger ball. The attack itself runs as without carrying (the same random streams), so a
    carried accuracy is never higher than the uncarried one, for any attack."""
    plan, attack = setting.plan, setting.attack
    epsilons = [e for e in setting.epsilons if e is not None]
    carry = setting.carry_examples and len(epsilons) > 1 and epsilons == sorted(epsilons)
    output = attack_in_fitting_batches(attack, target, x.clone(), y.clone(), epsilons, setting.observer)
    check_defense()
    found = FoundExamples([], [], [], [], output.seconds)
    beaten = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    points, carried_at, carried_details = x.clone(), torch.full((len(x),), math.nan, dtype=torch.float64), None
    view = (-1,) + (1,) * (x.dim() - 1)
    for eps, adv, detail in zip(setting.epsilons, output.adversarials,
                                output.details or [{} for _ in output.adversarials]):
        at = torch.full((len(x),), math.nan if eps is None else float(eps), dtype=torch.float64)
        verify_adversarials(x, adv, epsilon=eps, norm=attack.norm, bounds=setting.bounds, attack=plan.attack.id)
        pred = setting.defense.predict(adv, samples=setting.eot)
        if carry:
            now = judged_beaten(setting.defense, pred, y)
            keep = beaten & ~now  # beaten in a smaller ball, not by this epsilon's own example
            if keep.any():
                rows = keep.nonzero().squeeze(1)
                adv = torch.where(keep.view(view), points, adv)
                at[rows.cpu()] = carried_at[rows.cpu()]
                detail = merged_details(detail, rows_of(carried_details or {}, rows), rows, len(x))
                verify_adversarials(x, adv, epsilon=eps, norm=attack.norm, bounds=setting.bounds,
                                    attack=plan.attack.id)
                pred = setting.defense.predict(adv, samples=setting.eot)
                now = judged_beaten(setting.defense, pred, y)
            newly = (now & ~beaten).nonzero().squeeze(1)
            points[newly], carried_at[newly.cpu()] = adv[newly], at[newly.cpu()]
            carried_details = merged_details(carried_details, rows_of(detail, newly), newly, len(x))
            beaten |= now
        found.adversarials.append(adv)
        found.details.append(detail)
        found.predictions.append(pred)
        found.found_at.append(at)
    return found


def rows_of(details: Details, rows: torch.Tensor) -> Details:
    """The per-sample details of some rows of a batch."""
    index = rows.cpu().tolist()
    return {column: [values[i] for i in index] if isinstance(values, list) else values[rows.to(values.device)]
            for column, values in details.items()}


def judged_beaten(defense: Defense, pred: Prediction, y: torch.Tensor) -> torch.Tensor:
    """Whether the defense's own prediction is wrong (and accepted, where it has a reject option):
    only such a sample's example is carried to larger epsilons."""
    wrong = pred.labels.to(y.device) != y
    if defense.reject_threshold is not None and pred.reject_score is not None:
        wrong &= pred.reject_score.to(y.device) <= defense.reject_threshold
    return wrong


def merged_details(previous: Details | None, new: Details, rows: torch.Tensor, size: int) -> Details:
    """Per-sample details of a batch with `new` values for `rows` and `previous` ones elsewhere
    (a carried sample keeps the details of the epsilon its example was found at)."""
    merged: Details = {k: list(v) if isinstance(v, list) else v.clone() for k, v in (previous or {}).items()}
    index = rows.cpu().tolist()
    for column, values in new.items():
        if isinstance(values, list):
            base = merged.get(column) or [""] * size
            for i, value in zip(index, values):
                base[i] = value
        else:
            base = merged.get(column)
            if base is None:
                base = torch.full((size,), math.nan, dtype=values.dtype if values.is_floating_point() else torch.float)
            base = base.to(values.device) if base.device != values.device else base
            base[rows.to(base.device)] = values.to(base.dtype)
        merged[column] = base
    return merged


@dataclass(frozen=True)
class BatchCost:
    """Per input of a batch: wall seconds, model evaluations, gradient-model evaluations."""

    seconds: float
    queries: float
    gradients: float


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


def batch_records(setting: CellSetting, eps: float | None, index: torch.Tensor, y: torch.Tensor, x: torch.Tensor,
                  adv: torch.Tensor, clean: Prediction, offset: int, cost: BatchCost, grad_norms: torch.Tensor,
                  details: Details, pred: Prediction, found_at: torch.Tensor) -> list[dict[str, Any]]:
    """One record per sample of the batch at `eps`, from the defense's own prediction `pred` of `adv`."""
    plan, attack = setting.plan, setting.attack
    delta = (adv - x).flatten(1)
    l2, linf, x_l2 = Norm.L2.of(delta).cpu(), Norm.LINF.of(delta).cpu(), Norm.L2.of(x).cpu()
    adv_pred = pred.labels.cpu()
    broken = ~torch.isfinite(pred.logits).all(dim=1).cpu()
    if broken.any():  # no class at all: counted as a successful attack, never as robust
        adv_pred[broken] = NO_CLASS
        setting.observer.message(f"warning: {plan.defense.id} returned non-finite logits on {int(broken.sum())} "
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
            "seconds": cost.seconds, "queries": cost.queries, "gradients": cost.gradients,
            "certified_l2": float(clean.certified_l2[j]) if clean.certified_l2 is not None else math.nan,
            "access": setting.access.value, "grad_norm": float(grad_norms[i]),
            "component": "", "loss_first": math.nan, "loss_best": math.nan, "loss_last": math.nan,
            "best_step": math.nan, "found_at": float(found_at[i]),
        })
        for column, values in details.items():
            out[-1][column] = values[i] if isinstance(values, list) else float(values[i])
    return out
