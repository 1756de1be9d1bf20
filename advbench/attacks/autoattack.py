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
from .apgd import APGD, APGDTargeted
from .base import Adversarials, AttackTarget, FixedEpsilonAttack
from .fab import fab_within
from .objectives import build_objective
from .engine import LossTrace
from .square import Square

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

    def evaluations_on(self, stochastic: bool, eot: int) -> int:
        """The version the defense gets (`auto`: rand on a stochastic one); rand's EOT is its own
        `eot_iter` passes in calls of `eot` each, so the defense's passes are not counted twice."""
        if self.version == "rand" or (self.version == "auto" and stochastic):
            per_step = max(1, math.ceil(self.eot_iter / max(1, eot))) * max(1, eot) if stochastic else 1
            return 2 * self.steps * per_step
        return (self.steps * (1 + 2 * self.targets) + self.square_queries) * max(1, eot)

    def component_attacks(self, target: AttackTarget) -> dict[str, FixedEpsilonAttack]:
        """The ensemble's members as attacks of their own, set up as AutoAttack runs them (the
        registered `apgd-*` and `square` classes, and FAB-T read within epsilon)."""
        eot = max(1, math.ceil(self.eot_iter / target.eot)) if target.stochastic else 1
        norm, aware = self.norm.value, self.reject_aware
        members = {
            "apgd-ce": lambda: APGD(norm=norm, loss="ce", steps=self.steps, eot_iter=eot, reject_aware=aware),
            "apgd-dlr": lambda: APGD(norm=norm, loss="dlr", steps=self.steps, eot_iter=eot, reject_aware=aware),
            "apgd-t": lambda: APGDTargeted(norm=norm, steps=self.steps, targets=self.targets, eot_iter=eot,
                                           reject_aware=aware),
            "fab-t": lambda: FABWithinEpsilon(norm=norm, steps=self.steps, targets=self.targets, reject_aware=aware),
            "square": lambda: Square(norm=norm, queries=self.square_queries, reject_aware=aware),
        }
        return {name: members[name]() for name in self.components(target)}

    def run(self, target: AttackTarget, x: Tensor, y: Tensor, *, epsilon: float) -> Adversarials:
        """Each member attacks only the samples every earlier one left standing;
        the loss trace is APGD-CE's, the first member's."""
        judge = build_objective(target, "margin", reject_aware=self.reject_aware, decision=True)
        with torch.no_grad():
            standing = ~judge.success(judge.model(x), y)  # already-beaten inputs need no attack
        points = x.clone()
        component = [NOT_BEATEN] * len(x)
        trace = LossTrace(len(x), x.device)
        for name, member in self.component_attacks(target).items():
            idx = standing.nonzero().squeeze(1)
            if len(idx) == 0:
                break
            found = member.run(target, x[idx], y[idx], epsilon=epsilon)
            if name == "apgd-ce":
                write_trace(trace, idx, found.details)
            with torch.no_grad():
                beaten = judge.success(judge.model(found.points), y[idx])
            rows = idx[beaten]
            points[rows] = found.points[beaten]
            standing[rows] = False
            for row in rows.tolist():
                component[row] = name
        return Adversarials(points, {"component": component, **trace.details()})


def write_trace(trace: LossTrace, idx: Tensor, details: dict[str, Tensor]) -> None:
    """A member's loss trace (its `Adversarials.details`) into the ensemble's rows `idx`."""
    for field in ("first", "best", "last", "best_step"):
        values = details[f"loss_{field}" if field != "best_step" else "best_step"].to(idx.device)
        if field == "best":  # details write a loss never set as NaN; the trace keeps -inf there
            values = torch.where(torch.isnan(values), torch.full_like(values, -math.inf), values)
        getattr(trace, field)[idx] = values


class FABWithinEpsilon(FixedEpsilonAttack):
    """FAB-T as AutoAttack uses it: a fixed-epsilon attack whose points are FAB-T's minimal ones
    where they lie within epsilon, the inputs elsewhere (a member of the ensemble, not registered:
    `fab-t` is the minimum-norm attack)."""

    def __init__(self, *, norm: str = "linf", steps: int = 100, targets: int = 9, reject_aware: bool = True) -> None:
        self.norm = parse_norm(norm)
        self.steps, self.targets, self.reject_aware = steps, targets, reject_aware

    def run(self, target: AttackTarget, x: Tensor, y: Tensor, *, epsilon: float) -> Adversarials:
        objective = build_objective(target, "margin", reject_aware=self.reject_aware)
        return Adversarials(fab_within(objective, x, y, eps=epsilon, norm=self.norm, steps=self.steps,
                                       bounds=target.bounds, targets=self.targets)[0])
