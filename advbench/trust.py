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

from .contract import CellInfo, DefenseInfo
from .metrics import is_minimum_norm, outcomes_at
from .norms import Norm

FLAG_COLUMNS = ["defense", "attack", "flag", "detail", "advice"]
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


def attack_failure_flags(records: pd.DataFrame, cell_infos: dict[str, CellInfo] | None = None,
                         defenses: dict[str, DefenseInfo] | None = None) -> pd.DataFrame:
    """Every flag for every cell of a run (or combined runs)."""
    cells = {cell_id: cell for cell_id, cell in records.groupby("cell", sort=False)}
    flags = (_large_epsilon_flags(cells) + _blackbox_flags(cells) + _effort_flags(cells, cell_infos or {})
             + _gradient_flags(cells) + _randomness_flags(cells, defenses or {}))
    return pd.DataFrame([f.__dict__ for f in flags], columns=FLAG_COLUMNS)
