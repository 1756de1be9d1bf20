"""The Attack interface: fixed-epsilon and minimum-norm attacks.

Like foolbox, `Attack.__call__` is final and does the shared work (timing, shape
checks, one run per epsilon for fixed-epsilon attacks); a new attack implements
`run`. Attacks never trust themselves: the runner re-predicts every adversarial
example with the defense and verifies it lies in its epsilon ball and the data bounds.
"""

from __future__ import annotations

import inspect
import time
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, ClassVar, final

import torch
from torch import nn

from ..contract import DETAIL_COLUMNS, Access, AttackKind
from ..norms import Norm

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class Capability(Enum):
    """What an attack written for one kind of defense needs of it (`Attack.requires`)."""

    GAT_SURFACES = "gat"  # GAT's classifier and detectors as separate differentiable parts
    REJECT_OPTION = "reject-option"  # a reject score and its threshold

    @property
    def needs(self) -> str:
        return {Capability.GAT_SURFACES: "a gat model (classifier and detectors)",
                Capability.REJECT_OPTION: "a defense with a reject option"}[self]

    def offered_by(self, target: "AttackTarget") -> bool:
        if self is Capability.GAT_SURFACES:
            return {"classifier", "detectors"} <= set(target.surfaces)
        return target.reject_score is not None and target.reject_threshold is not None


@dataclass
class AttackTarget:
    """What an attack may use of a defense.

    `gradient_model` is the differentiable x -> logits function to take gradients of
    (the defense's surrogate, averaged over EOT samples when stochastic);
    `decision_model` is the defense's real inference, for gradient-free attacks;
    `loss` is the defense's own per-sample attack loss, if it has one;
    `load_model` turns a defense spec into a model on the same data and device
    (for attacks that bring their own network, like the `pgn` generator);
    `surfaces` are the defense's named differentiable parts (GAT: classifier, detectors);
    `reject_score`/`reject_threshold` expose a reject option (accept when score <= threshold);
    `joint_gradient_model`/`joint_decision_model` then output [logits | reject score] in one
    pass (differentiable and real, respectively), for reject-aware objectives;
    `eot` is the number of passes the models already average over (of a `stochastic` defense);
    `transfer` says the examples are judged on another model (a transfer source is attacked
    here): an attack must then not stop early on this model's decision, which is not the judge's.
    """

    gradient_model: nn.Module
    decision_model: nn.Module
    bounds: tuple[float, float]
    num_classes: int
    loss: Loss | None = None
    load_model: Callable[[str], nn.Module] | None = None
    dataset: str = ""
    surfaces: dict[str, nn.Module] = field(default_factory=dict)
    reject_score: Callable[[torch.Tensor], torch.Tensor] | None = None
    reject_threshold: float | None = None
    joint_gradient_model: nn.Module | None = None
    joint_decision_model: nn.Module | None = None
    eot: int = 1
    stochastic: bool = False
    transfer: bool = False

    @property
    def has_reject_option(self) -> bool:
        return self.joint_gradient_model is not None and self.reject_threshold is not None


Details = dict[str, Any]  # record column -> per-sample tensor (or list of str for `component`)


@dataclass
class Adversarials:
    """What `run` may return instead of a bare tensor: the points plus per-sample facts for
    the records (columns of `contract.DETAIL_COLUMNS`: the ensemble component that succeeded,
    queries, the loss trace)."""

    points: torch.Tensor
    details: Details = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.details) - set(DETAIL_COLUMNS)
        if unknown:
            raise ValueError(f"unknown record detail(s) {sorted(unknown)}; known: {', '.join(DETAIL_COLUMNS)}")


def concat_details(parts: list[Details]) -> Details:
    """Details of consecutive sub-batches joined into one batch's."""
    keys = set(parts[0]).intersection(*parts[1:]) if parts else set()
    return {k: (sum((list(p[k]) for p in parts), []) if isinstance(parts[0][k], list)
                else torch.cat([p[k] for p in parts])) for k in keys}


@dataclass
class AttackOutput:
    """Fixed-epsilon: one adversarial batch per epsilon. Minimum-norm: a single batch."""

    adversarials: list[torch.Tensor]
    seconds: float
    details: list[Details] = field(default_factory=list)  # parallel to `adversarials`


class Attack(ABC):
    """Base class. Hyperparameters are keyword-only `__init__` arguments with defaults.

    Subclass `FixedEpsilonAttack` (implement `run(target, x, y, *, epsilon)`) or
    `MinimumNormAttack` (implement `run(target, x, y)`); `__call__` is final."""

    description: ClassVar[str] = ""
    kind: ClassVar[AttackKind] = AttackKind.FIXED_EPSILON
    norm: Norm = Norm.LINF
    gradient_based: ClassVar[bool] = True
    score_based: ClassVar[bool] = False  # uses output scores but no gradients (e.g. Square)
    # what an attack written for one kind of defense needs of it (checked against the AttackTarget)
    requires: ClassVar[Capability | None] = None
    # options whose declared default is a sentinel, with what it stands for (`advbench list --params`)
    derived_defaults: ClassVar[dict[str, str]] = {}
    # options cheap enough for smoke tests (the registry-wide test runs every attack with them);
    # never results: a weakened attack overstates robustness
    fast_options: ClassVar[dict[str, Any]] = {}

    # a minimum-norm attack written for the old `run(target, x, y, epsilon)` (epsilon None): called so, with a warning
    legacy_epsilon_argument: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__call__" in cls.__dict__:
            raise TypeError(f"{cls.__name__} overrides Attack.__call__, which does the shared work; implement run")
        run = cls.__dict__.get("run")
        if cls.kind is AttackKind.MINIMUM_NORM and run is not None and \
                "epsilon" in inspect.signature(run).parameters:
            cls.legacy_epsilon_argument = True
            warnings.warn(f"attack {cls.__module__}.{cls.__qualname__}: a minimum-norm attack's run() no longer takes "
                          "epsilon (it was always None); write run(self, target, x, y). It is called with "
                          "epsilon=None for now; this will stop working in a later advbench", FutureWarning,
                          stacklevel=3)

    def unsupported(self, target: AttackTarget) -> str | None:
        """Why this attack cannot run on `target` (a missing capability), or None."""
        if self.requires is None or self.requires.offered_by(target):
            return None
        return f"needs {self.requires.needs}"

    @property
    def access(self) -> Access:
        if self.gradient_based:
            return Access.GRADIENT
        return Access.SCORE if self.score_based else Access.DECISION

    def hyperparameters(self) -> dict[str, Any]:
        params = inspect.signature(type(self).__init__).parameters.values()
        values = {p.name: getattr(self, p.name) for p in params if p.kind is p.KEYWORD_ONLY}
        return {k: v.value if isinstance(v, Enum) else v for k, v in values.items()}

    def expected_evaluations(self) -> int:
        """About how many model evaluations the attack spends per input and epsilon (EOT aside):
        drives the progress bar within a batch and the up-front time estimate, nothing else.
        The default reads `steps` (or `queries`) times `restarts`; override when that is wrong."""
        options = self.hyperparameters()
        steps = options.get("steps") or options.get("queries") or options.get("iterations") or 1
        restarts = options.get("restarts") or 1
        return max(1, int(steps) * int(restarts)) + 1

    def evaluations_on(self, stochastic: bool, eot: int) -> int:
        """Model evaluations per input and epsilon on a defense (`stochastic`, averaging `eot`
        passes per call): the attack's own count times the passes. An attack that spends its EOT
        budget itself (AutoAttack's rand version) overrides this, so that EOT counts once."""
        return self.expected_evaluations() * max(1, eot)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({args})"

    @final
    def __call__(self, target: AttackTarget, x: torch.Tensor, y: torch.Tensor, epsilons: list[float]) -> AttackOutput:
        start = time.perf_counter()
        if self.kind is AttackKind.MINIMUM_NORM:
            results = [self.run(target, x, y, epsilon=None) if self.legacy_epsilon_argument else self.run(target, x, y)]
        else:
            attacked = [eps for eps in epsilons if eps != 0]
            together = self.run_epsilons(target, x, y, attacked) if len(attacked) > 1 else None
            by_eps = dict(zip(attacked, together)) if together is not None else {}
            results = [x.clone() if eps == 0 else by_eps[eps] if eps in by_eps
                       else self.run(target, x, y, epsilon=eps) for eps in epsilons]
        found = [r if isinstance(r, Adversarials) else Adversarials(r) for r in results]
        return AttackOutput([f.points.detach() for f in found], time.perf_counter() - start,
                            [{k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in f.details.items()}
                             for f in found])

    @abstractmethod
    def run(self, target: AttackTarget, x: torch.Tensor, y: torch.Tensor,
            **kwargs: Any) -> torch.Tensor | Adversarials:
        """Adversarial inputs for `x` (see the two subclasses for the signature)."""

    def run_epsilons(self, target: AttackTarget, x: torch.Tensor, y: torch.Tensor,
                     epsilons: list[float]) -> list[torch.Tensor | Adversarials] | None:
        """Optional: every epsilon of a fixed-epsilon attack in one batched run (one result per
        epsilon, in order), or None to run them one by one (the default)."""
        return None


class FixedEpsilonAttack(Attack):
    """Runs once per epsilon; every example must lie in its epsilon ball (the runner checks)."""

    kind = AttackKind.FIXED_EPSILON

    @abstractmethod
    def run(self, target: AttackTarget, x: torch.Tensor, y: torch.Tensor, *,
            epsilon: float) -> torch.Tensor | Adversarials:
        """Adversarial inputs within `epsilon` of `x`."""


class MinimumNormAttack(Attack):
    """Runs once, unbounded; accuracy at every epsilon is read off the found norms."""

    kind = AttackKind.MINIMUM_NORM

    @abstractmethod
    def run(self, target: AttackTarget, x: torch.Tensor,  # type: ignore[override]
            y: torch.Tensor) -> torch.Tensor | Adversarials:
        """Adversarial inputs, as close to `x` as the attack can find."""
