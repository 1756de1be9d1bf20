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

from .contract import Access, CellInfo, DefenseInfo
from .metrics import is_minimum_norm, outcomes_at
from .norms import Norm

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


def _is_large(norm: str, eps: float, cell: pd.DataFrame) -> bool:
    """An epsilon as large as the box (Linf) or as the images themselves (L2)."""
    if norm == Norm.LINF.value:
        return eps >= LARGE_LINF
    return eps >= cell["x_l2"].median()


def _large_epsilon_flags(cells: dict[str, pd.DataFrame]) -> list[Flag]:
    flags = []
    for cell in cells.values():
        first = cell.iloc[0]
        if is_minimum_norm(cell):
            out = outcomes_at(cell, math.inf)
            if out["clean_ok"].any() and out["robust"].any():
                share = out["robust"].sum() / out["clean_ok"].sum()
                flags.append(Flag(first["defense"], first["attack"], "unbounded-attack-incomplete",
                                  f"unbounded, it failed on {share:.0%} of correctly classified samples",
                                  "a minimum-norm attack should reach 100%: raise steps, check the defense's "
                                  "gradients (EOT for randomness, an adaptive gradient), try boundary"))
            continue
        eps = float(cell["epsilon"].max())
        if eps > 0 and _is_large(first["norm"], eps, cell):
            accuracy = outcomes_at(cell, eps)["robust"].mean()
            if accuracy > LARGE_ACCURACY:
                flags.append(Flag(first["defense"], first["attack"], "large-epsilon-accuracy",
                                  f"accuracy {accuracy:.0%} at {first['norm']} eps {eps:g}, where any input "
                                  "can be replaced", "accuracy should fall toward 0: more steps, a larger step "
                                                     "size, EOT, or an adaptive loss"))
    return flags


def _accuracy_at(cells: dict[str, pd.DataFrame], names: pd.Series, eps: float) -> dict[str, tuple[float, int]]:
    """Robust accuracy and sample count of each named cell that measured `eps`, by attack."""
    found = {}
    for name in names:
        cell = cells[name]
        if is_minimum_norm(cell) or np.isclose(cell["epsilon"], eps).any():
            out = outcomes_at(cell, eps)
            found[cell.iloc[0]["attack"]] = (float(out["robust"].mean()), len(out))
    return found


def _blackbox_flags(cells: dict[str, pd.DataFrame]) -> list[Flag]:
    """A gradient-free or transfer attack doing better than every gradient attack on one defense."""
    flags = []
    def access(cell: pd.DataFrame) -> str:  # runs recorded before the column existed count as gradient
        value = cell.iloc[0].get("access")
        return value if isinstance(value, str) else "gradient"

    frame = pd.DataFrame([{"cell": c, "defense": d.iloc[0]["defense"], "attack": d.iloc[0]["attack"],
                           "norm": d.iloc[0]["norm"], "access": access(d)} for c, d in cells.items()])
    for (defense, norm), group in frame.groupby(["defense", "norm"], sort=False):
        white = group[group["access"] == "gradient"]
        black = group[group["access"] != "gradient"]
        if white.empty or black.empty:
            continue
        epsilons = sorted({float(e) for c in group["cell"] for e in cells[c]["epsilon"].dropna() if e > 0})
        for eps in epsilons:
            white_acc, black_acc = _accuracy_at(cells, white["cell"], eps), _accuracy_at(cells, black["cell"], eps)
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


def _effort_flags(cells: dict[str, pd.DataFrame], infos: dict[str, CellInfo]) -> list[Flag]:
    """The same attack with more steps or restarts must not leave more accuracy, nor much less."""
    flags = []
    effort_keys = ("steps", "restarts")
    described = []
    for cell_id, cell in cells.items():
        info = infos.get(cell_id)
        if info is None or is_minimum_norm(cell):
            continue
        first = cell.iloc[0]
        rest = tuple(sorted((k, str(v)) for k, v in info.hyperparameters.items() if k not in effort_keys))
        rest += (("eot", str(info.eot)), ("source", str(info.source)))
        effort = math.prod(int(info.hyperparameters.get(k, 1) or 1) for k in effort_keys)
        described.append((first["defense"], info.attack_name, rest, effort, cell_id))
    groups: dict[tuple, list[tuple[int, str]]] = {}
    for defense, name, rest, effort, cell_id in described:
        groups.setdefault((defense, name, rest), []).append((effort, cell_id))
    for (defense, _, _), members in groups.items():
        members.sort()
        for (low_effort, low_id), (high_effort, high_id) in itertools.pairwise(members):
            if high_effort <= low_effort:
                continue
            low, high = cells[low_id], cells[high_id]
            shared = sorted(set(low["epsilon"]) & set(high["epsilon"]))
            for eps in shared:
                a, b = outcomes_at(low, eps)["robust"].mean(), outcomes_at(high, eps)["robust"].mean()
                samples = len(low.drop_duplicates("sample"))
                if _significant(b - a, samples):
                    flags.append(Flag(defense, high.iloc[0]["attack"], "more-effort-more-accuracy",
                                      f"{b:.0%} with more steps/restarts vs {a:.0%} ({low.iloc[0]['attack']}) at "
                                      f"eps {eps:g}", "the defense or attack is random: use EOT and keep the "
                                                      "best restart"))
                    break
                if _significant(a - b, samples) and a - b > 0.05:
                    flags.append(Flag(defense, low.iloc[0]["attack"], "not-converged",
                                      f"{a:.0%} vs {b:.0%} with more steps/restarts ({high.iloc[0]['attack']}) at "
                                      f"eps {eps:g}", "the attack had not converged: use more steps and restarts"))
                    break
    return flags


def _gradient_flags(cells: dict[str, pd.DataFrame]) -> list[Flag]:
    flags = []
    for cell in cells.values():
        if "grad_norm" not in cell or cell["grad_norm"].isna().all():
            continue
        norms = cell.drop_duplicates("sample")["grad_norm"]
        dead = ((norms == 0) | ~np.isfinite(norms)).mean()
        if dead > DEAD_GRADIENT_SHARE:
            first = cell.iloc[0]
            flags.append(Flag(first["defense"], first["attack"], "dead-gradients",
                              f"zero or non-finite loss gradients on {dead:.0%} of clean inputs",
                              "gradients are masked (e.g. a step function or saturated softmax): use the "
                              "defense's adaptive gradient, a margin loss, BPDA, or a gradient-free attack"))
    return flags


def _randomness_flags(cells: dict[str, pd.DataFrame], defenses: dict[str, DefenseInfo]) -> list[Flag]:
    flags = []
    for defense, info in defenses.items():
        changed = info.nondeterministic
        if changed and not info.stochastic:
            for cell in cells.values():
                if cell.iloc[0]["defense"] == defense:
                    flags.append(Flag(defense, cell.iloc[0]["attack"], "undeclared-randomness",
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


def _autoattack_flags(cells: dict[str, pd.DataFrame], infos: dict[str, CellInfo]) -> list[Flag]:
    """A fixed-epsilon gradient attack that leaves more than a point above `autoattack` on the
    same defense, norm, epsilon and samples was too weak: its row is marked. (Score-based,
    decision-based and transfer attacks are weaker by design and are not bounds.)"""
    flags = []
    ensembles = [c for c, info in infos.items() if info.attack_name == AUTOATTACK and c in cells]
    for ensemble_id in ensembles:
        ensemble = cells[ensemble_id]
        first = ensemble.iloc[0]
        for cell_id, cell in cells.items():
            head = cell.iloc[0]
            if (cell_id == ensemble_id or head["defense"] != first["defense"] or head["norm"] != first["norm"]
                    or is_minimum_norm(cell) or head.get("access", Access.GRADIENT.value) != Access.GRADIENT.value):
                continue
            for eps in sorted(set(cell["epsilon"]) & set(ensemble["epsilon"])):
                weak, strong = outcomes_at(cell, eps), outcomes_at(ensemble, eps)
                if not weak.index.equals(strong.index):
                    continue
                gap = weak["robust"].mean() - strong["robust"].mean()
                if gap > AUTOATTACK_MARGIN:
                    flags.append(Flag(head["defense"], head["attack"], "weaker-than-autoattack",
                                      f"{weak['robust'].mean():.1%} vs {strong['robust'].mean():.1%} under "
                                      f"{first['attack']} at eps {eps:g}", "report the autoattack (or ALL) row; "
                                                                           "this attack is not the bound",
                                      float(eps)))
    return flags


def _trace_flags(cells: dict[str, pd.DataFrame], infos: dict[str, CellInfo]) -> list[Flag]:
    """Pintor et al. 2022 indicators from the recorded loss traces of samples the attack did
    not beat: a loss that never moved (masked or flat gradients), or one still at its best on
    the last steps (the optimisation was cut short)."""
    flags = []
    for cell_id, cell in cells.items():
        head = cell.iloc[0]
        if ("loss_best" not in cell or cell["loss_best"].isna().all() or is_minimum_norm(cell)
                or head.get("access") == Access.TRANSFER.value):  # a transfer's trace is of another model
            continue
        standing = cell[(cell["clean_pred"] == cell["label"]) & (cell["adv_pred"] == cell["label"])]
        standing = standing.dropna(subset=["loss_first", "loss_best", "loss_last"])
        if len(standing) < 5:
            continue
        flat = (standing["loss_best"] - standing["loss_first"]).abs() <= 1e-6 * standing["loss_first"].abs().clip(
            lower=1e-6)
        if flat.mean() > TRACE_SHARE:
            flags.append(Flag(head["defense"], head["attack"], "loss-not-improving",
                              f"the loss never rose from its start on {flat.mean():.0%} of the samples left "
                              "standing", "gradients may be zero or uninformative: an adaptive gradient, BPDA, "
                                          "or a score-based attack"))
        info = infos.get(cell_id)
        steps = info.hyperparameters.get("steps") if info else None
        # only where the step size decays (APGD): with a constant step the loss of a robust
        # sample creeps up to the end however long the attack runs
        decaying = info is not None and (info.attack_name.startswith("apgd") or info.attack_name == AUTOATTACK)
        if decaying and isinstance(steps, int) and steps >= 10:
            position = standing["best_step"] % (steps + 1)
            late = (position >= 0.9 * steps) & (standing["loss_last"] >= standing["loss_best"]) & ~flat
            if late.mean() > TRACE_SHARE:
                flags.append(Flag(head["defense"], head["attack"], "incomplete-optimisation",
                                  f"the loss was still rising at the last steps on {late.mean():.0%} of the "
                                  "samples left standing", "more steps (or a larger step size)"))
    return flags


def attack_failure_flags(records: pd.DataFrame, cell_infos: dict[str, CellInfo] | None = None,
                         defenses: dict[str, DefenseInfo] | None = None) -> pd.DataFrame:
    """Every flag for every cell of a run (or combined runs)."""
    cells = {cell_id: cell for cell_id, cell in records.groupby("cell", sort=False)}
    flags = (_large_epsilon_flags(cells) + _blackbox_flags(cells) + _effort_flags(cells, cell_infos or {})
             + _gradient_flags(cells) + _randomness_flags(cells, defenses or {})
             + _autoattack_flags(cells, cell_infos or {}) + _trace_flags(cells, cell_infos or {}))
    return pd.DataFrame([f.__dict__ for f in flags], columns=FLAG_COLUMNS)
