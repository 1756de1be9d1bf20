"""`autoattack`: the AutoAttack ensemble (Croce & Hein 2020) with its semantics, on our engine.

`standard`: APGD-CE, APGD-T (targeted DLR over 9 classes), FAB-T (9 targets), Square (5000
queries); `rand` (chosen automatically for defenses that declare themselves stochastic):
APGD-CE and APGD-DLR with gradients averaged over 20 EOT passes. Each component attacks
only the samples every earlier one left standing, judged on the defense's real decision
(EOT-averaged; misclassified AND accepted for reject-option defenses, whose every
component is reject-aware). The records say which component beat each sample.
"""

from __future__ import annotations

import math
import torch

from ..contract import ENSEMBLE_VERSIONS
from ..errors import AdvbenchError
from ..norms import parse_norm
from ..registry import register_attack
from .apgd import apgd, apgd_targeted
from .base import Adversarials, AttackTarget, FixedEpsilonAttack
from .fab import fab_within
from .objectives import build_objective
from .pgd import LossTrace
from .square import square_attack

Tensor = torch.Tensor
VERSIONS = ("auto", "standard", "rand")
COMPONENTS = ENSEMBLE_VERSIONS
NOT_BEATEN = ""  # the component column of a sample no component beat


@register_attack("autoattack", description="AutoAttack ensemble: APGD-CE, APGD-T, FAB-T, Square (standard) or "
                                           "APGD-CE, APGD-DLR with EOT 20 (rand, for stochastic defenses); "
                                           "--norm l2 for L2")
class AutoAttack(FixedEpsilonAttack):
    """Per-sample worst case over the components, each run on the points still standing."""
    fast_options = {"steps": 20, "targets": 3, "square_queries": 300, "eot_iter": 2}

    def __init__(self, *, norm: str = "linf", version: str = "auto", steps: int = 100, targets: int = 9,
                 square_queries: int = 5000, eot_iter: int = 20, reject_aware: bool = True) -> None:
        if version not in VERSIONS:
            raise AdvbenchError(f"autoattack: version must be one of {', '.join(VERSIONS)}")
        self.norm = parse_norm(norm)
        self.version, self.steps, self.targets = version, steps, targets
        self.square_queries, self.eot_iter, self.reject_aware = square_queries, eot_iter, reject_aware

    def components(self, target: AttackTarget) -> tuple[str, ...]:
        version = self.version if self.version != "auto" else "rand" if target.stochastic else "standard"
        return COMPONENTS[version]

    def expected_evaluations(self) -> int:
        """Worst case (nothing falls early): APGD-CE, then APGD-T and FAB-T over the targets and
        Square (standard), or APGD-CE and APGD-DLR with EOT (rand)."""
        if self.version == "rand":
            return 2 * self.steps * self.eot_iter
        return self.steps * (1 + 2 * self.targets) + self.square_queries

    def run(self, target: AttackTarget, x: Tensor, y: Tensor, *, epsilon: float) -> Adversarials:
        judge = build_objective(target, "margin", reject_aware=self.reject_aware, decision=True)
        with torch.no_grad():
            standing = ~judge.success(judge.model(x), y)  # already-beaten inputs need no attack
        points = x.clone()
        component = [NOT_BEATEN] * len(x)
        trace = LossTrace(len(x), x.device)
        for name in self.components(target):
            idx = standing.nonzero().squeeze(1)
            if len(idx) == 0:
                break
            found = self._component(name, target, x[idx], y[idx], epsilon, trace, idx)
            with torch.no_grad():
                beaten = judge.success(judge.model(found), y[idx])
            rows = idx[beaten]
            points[rows] = found[beaten]
            standing[rows] = False
            for row in rows.tolist():
                component[row] = name
        return Adversarials(points, {"component": component, **trace.details()})

    def _component(self, name: str, target: AttackTarget, x: Tensor, y: Tensor, eps: float, trace: LossTrace,
                   idx: Tensor) -> Tensor:
        """Run one component on the standing samples (queries are counted by the runner)."""
        eot = max(1, math.ceil(self.eot_iter / target.eot)) if target.stochastic else 1
        norm, bounds = self.norm, target.bounds
        if name in ("apgd-ce", "apgd-dlr"):
            objective = build_objective(target, "ce" if name == "apgd-ce" else "dlr", reject_aware=self.reject_aware)
            sub = _SubTrace(trace, idx) if name == "apgd-ce" else None
            best = apgd(objective, x, y, eps=eps, norm=norm, steps=self.steps, bounds=bounds, eot_iter=eot,
                        trace=sub.trace if sub else None)
            if sub:
                sub.write_back()
            return best.point
        if name == "apgd-t":
            objective = build_objective(target, "dlr", reject_aware=self.reject_aware)
            return apgd_targeted(objective, x, y, eps=eps, norm=norm, steps=self.steps, bounds=bounds,
                                 targets=self.targets, eot_iter=eot).point
        if name == "fab-t":
            objective = build_objective(target, "margin", reject_aware=self.reject_aware)
            return fab_within(objective, x, y, eps=eps, norm=norm, steps=self.steps, bounds=bounds,
                              targets=self.targets)[0]
        objective = build_objective(target, "margin", reject_aware=self.reject_aware, decision=True)
        return square_attack(objective, x, y, eps=eps, norm=norm, queries=self.square_queries, bounds=bounds)[0]


class _SubTrace:
    """A trace for a sub-batch, copied into the batch's trace afterwards."""

    def __init__(self, trace: LossTrace, idx: Tensor) -> None:
        self.parent, self.idx = trace, idx
        self.trace = LossTrace(len(idx), idx.device)

    def write_back(self) -> None:
        for field in ("first", "best", "last", "best_step"):
            getattr(self.parent, field)[self.idx] = getattr(self.trace, field)

