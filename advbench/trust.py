"""Attack-failure checks: signs that an evaluation under-reports attacks' success.

Computed from per-sample records and the manifest, like every metric, after AutoAttack's
flags and Pintor et al. 2022's "indicators of attack failure". Each flag names the cell(s)
it concerns and what to try. A flag is a reason to look, not proof of a broken defense.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .contract import Access
from .norms import Norm
from .read_model import CellRecords, Run

FLAG_COLUMNS = ["defense", "attack", "flag", "detail", "advice", "epsilon"]
MARGIN = 0.02            # accuracy differences below 2 points (or 2 samples) are noise
DEAD_GRADIENT_SHARE = 0.1
LARGE_LINF = 0.5         # half the [0, 1] box: any honest Linf attack wins there
LARGE_ACCURACY = 0.1     # accuracy left at a large epsilon that counts as "not falling toward zero"


@dataclass(frozen=True)
class Flag:
    defense: str
    attack: str
    flag: str
    detail: str
    advice: str
    epsilon: float = math.nan  # the epsilon the flag is about, where it is about one


def _significant(difference: float, samples: int) -> bool:
    return difference > max(MARGIN, 2 / max(samples, 1))


def _is_large(eps: float, cell: CellRecords) -> bool:
    """An epsilon as large as the box (Linf) or as the images themselves (L2)."""
    if cell.norm is Norm.LINF:
        return eps >= LARGE_LINF
    return eps >= cell.frame["x_l2"].median()


def _large_epsilon_flags(run: Run) -> list[Flag]:
    flags = []
    for cell in run.cells.values():
        if cell.minimum_norm:
            out = run.outcomes(cell, math.inf)
            if out["clean_ok"].any() and out["robust"].any():
                share = out["robust"].sum() / out["clean_ok"].sum()
                flags.append(Flag(cell.defense, cell.attack, "unbounded-attack-incomplete",
                                  f"unbounded, it failed on {share:.0%} of correctly classified samples",
                                  "a minimum-norm attack should reach 100%: raise steps, check the defense's "
                                  "gradients (EOT for randomness, an adaptive gradient), try boundary"))
            continue
        eps = max(cell.measured, default=0.0)
        if eps > 0 and _is_large(eps, cell):
            accuracy = run.robust_accuracy(cell, eps)
            if accuracy > LARGE_ACCURACY:
                flags.append(Flag(cell.defense, cell.attack, "large-epsilon-accuracy",
                                  f"accuracy {accuracy:.0%} at {cell.norm.value} eps {eps:g}, where any input "
                                  "can be replaced", "accuracy should fall toward 0: more steps, a larger step "
                                                     "size, EOT, or an adaptive loss"))
    return flags


def _accuracy_at(run: Run, cells: list[CellRecords], eps: float) -> dict[str, tuple[float, int]]:
    """Robust accuracy and sample count of each cell that measured `eps`, by attack."""
    found = {}
    for cell in cells:
        if cell.measured_at(eps):
            out = run.outcomes(cell, eps)
            found[cell.attack] = (float(out["robust"].mean()), len(out))
    return found


def _blackbox_flags(run: Run) -> list[Flag]:
    """A gradient-free or transfer attack doing better than every gradient attack on one defense."""
    flags = []
    for (defense, _), group in run.groups.items():
        white = [cell for cell in group if cell.access is Access.GRADIENT]
        black = [cell for cell in group if cell.access is not Access.GRADIENT]
        if not white or not black:
            continue
        for eps in sorted({e for cell in group for e in cell.measured if e > 0}):
            white_acc, black_acc = _accuracy_at(run, white, eps), _accuracy_at(run, black, eps)
            if not white_acc or not black_acc:
                continue
            best_white = min(a for a, _ in white_acc.values())
            name, (best_black, samples) = min(black_acc.items(), key=lambda item: item[1][0])
            if _significant(best_white - best_black, samples):
                for attack in white_acc:
                    flags.append(Flag(defense, attack, "beaten-by-black-box",
                                      f"{name} leaves {best_black:.0%} at eps {eps:g}, gradient attacks "
                                      f"{best_white:.0%}", "gradients may be masked or obfuscated: attack the "
                                                           "defense's adaptive gradient, use EOT or BPDA"))
                break  # one flag per defense and norm
    return flags


def _effort_flags(run: Run) -> list[Flag]:
    """The same attack with more steps or restarts must not leave more accuracy, nor much less."""
    flags = []
    effort_keys = ("steps", "restarts")
    described = []
    for cell in run.cells.values():
        info = cell.info
        if info is None or cell.minimum_norm:
            continue
        rest = tuple(sorted((k, str(v)) for k, v in info.hyperparameters.items() if k not in effort_keys))
        rest += (("eot", str(info.eot)), ("source", str(info.source)))
        effort = math.prod(int(info.hyperparameters.get(k, 1) or 1) for k in effort_keys)
        described.append((cell.defense, info.attack_name, rest, effort, cell.id))
    groups: dict[tuple, list[tuple[int, str]]] = {}
    for defense, name, rest, effort, cell_id in described:
        groups.setdefault((defense, name, rest), []).append((effort, cell_id))
    for (defense, _, _), members in groups.items():
        members.sort()
        for (low_effort, low_id), (high_effort, high_id) in itertools.pairwise(members):
            if high_effort <= low_effort:
                continue
            low, high = run.cells[low_id], run.cells[high_id]
            for eps in sorted(set(low.measured) & set(high.measured)):
                a, b = run.robust_accuracy(low, eps), run.robust_accuracy(high, eps)
                samples = len(low.samples)
                if _significant(b - a, samples):
                    flags.append(Flag(defense, high.attack, "more-effort-more-accuracy",
                                      f"{b:.0%} with more steps/restarts vs {a:.0%} ({low.attack}) at "
                                      f"eps {eps:g}", "the defense or attack is random: use EOT and keep the "
                                                      "best restart"))
                    break
                if _significant(a - b, samples) and a - b > 0.05:
                    flags.append(Flag(defense, low.attack, "not-converged",
                                      f"{a:.0%} vs {b:.0%} with more steps/restarts ({high.attack}) at "
                                      f"eps {eps:g}", "the attack had not converged: use more steps and restarts"))
                    break
    return flags


def _gradient_flags(run: Run) -> list[Flag]:
    flags = []
    for cell in run.cells.values():
        if "grad_norm" not in cell.frame or cell.frame["grad_norm"].isna().all():
            continue
        norms = cell.by_sample["grad_norm"]
        dead = ((norms == 0) | ~np.isfinite(norms)).mean()
        if dead > DEAD_GRADIENT_SHARE:
            flags.append(Flag(cell.defense, cell.attack, "dead-gradients",
                              f"zero or non-finite loss gradients on {dead:.0%} of clean inputs",
                              "gradients are masked (e.g. a step function or saturated softmax): use the "
                              "defense's adaptive gradient, a margin loss, BPDA, or a gradient-free attack"))
    return flags


def _randomness_flags(run: Run) -> list[Flag]:
    flags = []
    for defense, info in run.defenses.items():
        changed = info.nondeterministic
        if changed and not info.stochastic:
            for cell in run.cells.values():
                if cell.defense == defense:
                    flags.append(Flag(defense, cell.attack, "undeclared-randomness",
                                      f"predictions changed between two identical calls ({changed})",
                                      "declare the defense stochastic and attack with EOT (--eot)"))
    return flags


AUTOATTACK = "autoattack"
AUTOATTACK_MARGIN = 0.01  # an attack leaving more than 1 point above autoattack is marked weaker
TRACE_SHARE = 0.2         # share of unbeaten samples whose loss trace must look wrong to flag a cell
# flags whose cells' numbers the tables print as unreliable rather than as results
UNRELIABLE = {"beaten-by-black-box", "dead-gradients", "undeclared-randomness"}
# of those, the flags that make every number of the defense unreliable (its worst cases too)
WHOLE_DEFENSE = {"undeclared-randomness"}


def unreliable_reasons(summary: pd.DataFrame, flags: pd.DataFrame, ensembles: set[tuple[str, str]]) -> list[str]:
    """Per summary row, the flags that make its number unreliable ("" for none): a flagged cell's
    rows, and every row of a defense whose predictions are random without being declared so. A
    black-box flag on an ensemble is left out (its own Square component covers it)."""
    by_cell: dict[tuple[str, str], set[str]] = {}
    by_defense: dict[str, set[str]] = {}
    for flag in flags.itertuples():
        if flag.flag in WHOLE_DEFENSE:
            by_defense.setdefault(flag.defense, set()).add(flag.flag)
        elif flag.flag in UNRELIABLE and (flag.defense, flag.attack) not in ensembles:
            by_cell.setdefault((flag.defense, flag.attack), set()).add(flag.flag)
    return [";".join(sorted(by_cell.get((d, a), set()) | by_defense.get(d, set())))
            for d, a in zip(summary["defense"], summary["attack"])]


def _autoattack_flags(run: Run) -> list[Flag]:
    """A fixed-epsilon gradient attack that leaves more than a point above `autoattack` on the
    same defense, norm, epsilon and samples was too weak: its row is marked. (Score-based,
    decision-based and transfer attacks are weaker by design and are not bounds.)"""
    flags = []
    ensembles = [cell for cell in run.cells.values() if cell.info is not None and cell.info.attack_name == AUTOATTACK]
    for ensemble in ensembles:
        for cell in run.groups[(ensemble.defense, ensemble.norm)]:
            if cell is ensemble or cell.minimum_norm or cell.access is not Access.GRADIENT:
                continue
            for eps in sorted(set(cell.measured) & set(ensemble.measured)):
                weak, strong = run.outcomes(cell, eps), run.outcomes(ensemble, eps)
                if not weak.index.equals(strong.index):
                    continue
                gap = weak["robust"].mean() - strong["robust"].mean()
                if gap > AUTOATTACK_MARGIN:
                    flags.append(Flag(cell.defense, cell.attack, "weaker-than-autoattack",
                                      f"{weak['robust'].mean():.1%} vs {strong['robust'].mean():.1%} under "
                                      f"{ensemble.attack} at eps {eps:g}", "report the autoattack (or ALL) row; "
                                                                           "this attack is not the bound",
                                      float(eps)))
    return flags


def _trace_flags(run: Run) -> list[Flag]:
    """Pintor et al. 2022 indicators from the recorded loss traces of samples the attack did
    not beat: a loss that never moved (masked or flat gradients), or one still at its best on
    the last steps (the optimisation was cut short)."""
    flags = []
    for cell in run.cells.values():
        frame = cell.frame
        if ("loss_best" not in frame or frame["loss_best"].isna().all() or cell.minimum_norm
                or cell.access is Access.TRANSFER):  # a transfer's trace is of another model
            continue
        standing = frame[(frame["clean_pred"] == frame["label"]) & (frame["adv_pred"] == frame["label"])]
        standing = standing.dropna(subset=["loss_first", "loss_best", "loss_last"])
        if len(standing) < 5:
            continue
        flat = (standing["loss_best"] - standing["loss_first"]).abs() <= 1e-6 * standing["loss_first"].abs().clip(
            lower=1e-6)
        if flat.mean() > TRACE_SHARE:
            flags.append(Flag(cell.defense, cell.attack, "loss-not-improving",
                              f"the loss never rose from its start on {flat.mean():.0%} of the samples left "
                              "standing", "gradients may be zero or uninformative: an adaptive gradient, BPDA, "
                                          "or a score-based attack"))
        info = cell.info
        steps = info.hyperparameters.get("steps") if info else None
        # only where the step size decays (APGD): with a constant step the loss of a robust
        # sample creeps up to the end however long the attack runs
        decaying = info is not None and (info.attack_name.startswith("apgd") or info.attack_name == AUTOATTACK)
        if decaying and isinstance(steps, int) and steps >= 10:
            position = standing["best_step"] % (steps + 1)
            late = (position >= 0.9 * steps) & (standing["loss_last"] >= standing["loss_best"]) & ~flat
            if late.mean() > TRACE_SHARE:
                flags.append(Flag(cell.defense, cell.attack, "incomplete-optimisation",
                                  f"the loss was still rising at the last steps on {late.mean():.0%} of the "
                                  "samples left standing", "more steps (or a larger step size)"))
    return flags


def attack_failure_flags(run: Run) -> pd.DataFrame:
    """Every flag for every cell of a run (or combined runs)."""
    flags = (_large_epsilon_flags(run) + _blackbox_flags(run) + _effort_flags(run) + _gradient_flags(run)
             + _randomness_flags(run) + _autoattack_flags(run) + _trace_flags(run))
    return pd.DataFrame([f.__dict__ for f in flags], columns=FLAG_COLUMNS)
