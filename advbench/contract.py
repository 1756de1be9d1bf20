"""The run contract: what a run directory holds, typed and versioned.

Writers (the runner and executors) and readers (metrics, trust checks, reports) share
these types instead of nested dicts and string literals. The manifest records, for
every finished cell, the row count and sha256 of its records file: a truncated,
garbled or swapped file is named on read instead of being counted, and `--resume`
reruns it. Schema 1 (runs before this module) is still read for reports.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

from .errors import AdvbenchError
from .norms import Norm, parse_norm

SCHEMA_VERSION = 4


class _TextEnum(str, Enum):
    """An enum stored as its text in records and manifests."""

    def __str__(self) -> str:
        return self.value


class AttackKind(_TextEnum):
    FIXED_EPSILON = "fixed-epsilon"
    MINIMUM_NORM = "minimum-norm"


class CellRole(_TextEnum):
    """Why a cell is in a grid: asked for by the user, or added to check the others (the masking
    sanity attacks, `advbench.sanity`): reports leave sanity cells out of comparisons and papers."""

    EVALUATED = "evaluated"
    SANITY = "sanity"


class SummaryKind(_TextEnum):
    """What a summary row is: one attack's cell read at an epsilon (its `AttackKind`), or the
    per-sample worst case over a defense's attacks of one norm (the ALL rows)."""

    FIXED_EPSILON = AttackKind.FIXED_EPSILON.value
    MINIMUM_NORM = AttackKind.MINIMUM_NORM.value
    WORST_CASE = "worst-case"


class Access(_TextEnum):
    """What of the defense an attack used: its gradients, its scores, only its decisions, or another model."""

    GRADIENT = "gradient"
    SCORE = "score"  # the defense's output scores (logits, reject score), no gradients
    DECISION = "decision"
    TRANSFER = "transfer"


class RunStatus(_TextEnum):
    COMPLETE = "complete"
    INCOMPLETE = "incomplete"


# One record per sample per cell (per epsilon for fixed-epsilon attacks), in this column order.
RECORD_SCHEMA: dict[str, str] = {
    "cell": "str", "defense": "str", "attack": "str", "norm": "str", "kind": "str", "epsilon": "float",
    "sample": "int", "label": "int", "clean_pred": "int", "clean_score": "float", "adv_pred": "int",
    "adv_score": "float", "l2": "float", "linf": "float", "x_l2": "float", "seconds": "float", "queries": "float",
    "gradients": "float", "certified_l2": "float", "access": "str", "grad_norm": "float",
    # schema 3: which part of an ensemble found the sample's adversarial, and the attack's loss trace
    "component": "str", "loss_first": "float", "loss_best": "float", "loss_last": "float", "best_step": "float",
    # schema 4: the epsilon at which a fixed-epsilon attack found the sample's example (smaller than
    # `epsilon` when it was carried over from a smaller ball)
    "found_at": "float",
}
RECORD_COLUMNS: list[str] = list(RECORD_SCHEMA)
# Columns an attack may fill per sample (`Adversarials.details`); the runner fills the rest.
DETAIL_COLUMNS: tuple[str, ...] = ("component", "queries", "loss_first", "loss_best", "loss_last", "best_step")
# Components of the `autoattack` ensemble in the order they run (standard: apgd-ce, apgd-t, fab-t,
# square; rand: apgd-ce, apgd-dlr): the `component` column names the one that beat a sample.
ENSEMBLE_ORDER: tuple[str, ...] = ("apgd-ce", "apgd-t", "apgd-dlr", "fab-t", "square")
ENSEMBLE_VERSIONS: dict[str, tuple[str, ...]] = {"standard": ("apgd-ce", "apgd-t", "fab-t", "square"),
                                                 "rand": ("apgd-ce", "apgd-dlr")}
# Columns added after schema 2, filled with blanks when older runs are read.
LATER_COLUMNS: dict[int, tuple[str, ...]] = {3: ("component", "loss_first", "loss_best", "loss_last", "best_step"),
                                             4: ("found_at",)}


@dataclass(frozen=True)
class CellInfo:
    """One defense x attack cell as planned: everything needed to read its records."""

    id: str
    defense: str
    attack: str
    attack_name: str
    norm: Norm
    kind: AttackKind
    epsilons: tuple[float, ...]
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    eot: int | None = None
    source: str | None = None
    role: CellRole = CellRole.EVALUATED

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "norm": self.norm.value, "kind": self.kind.value, "epsilons": list(self.epsilons),
                "role": self.role.value}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "CellInfo":
        return cls(id=str(data["id"]), defense=str(data["defense"]), attack=str(data["attack"]),
                   attack_name=str(data.get("attack_name", data["attack"])), norm=parse_norm(data["norm"]),
                   kind=AttackKind(data["kind"]), epsilons=tuple(float(e) for e in data.get("epsilons", ())),
                   hyperparameters=dict(data.get("hyperparameters", {})), eot=data.get("eot"),
                   source=data.get("source"), role=CellRole(data["role"]) if "role" in data
                   else CellRole.SANITY if str(data["attack"]).startswith("sanity ") else CellRole.EVALUATED)


@dataclass(frozen=True)
class CellChecksum:
    """What a finished cell's records file must contain: `rows` records hashing to `sha256`."""

    rows: int
    sha256: str


@dataclass
class DefenseInfo:
    """What the report and the trust checks need to know about an evaluated defense."""

    spec: str
    stochastic: bool = False
    eot_samples: int = 1
    reject_threshold: float | None = None
    card: dict[str, Any] | None = None
    weights_sha256: str | None = None  # digest of the parameters and buffers that were attacked
    checkpoint_sha256: str | None = None  # digest of the zoo checkpoint file, when it came from one
    nondeterministic: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "DefenseInfo":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class Timings:
    """Where a run's wall time went, in seconds: training the missing models, each defense's clean
    pass (predictions, gradient norms), each cell."""

    training: float | None = None
    clean: dict[str, float] = field(default_factory=dict)  # defense id -> s
    cells: dict[str, float] = field(default_factory=dict)  # cell id -> s

    def phases(self) -> dict[str, float]:
        """One label per phase, as the report's timing table prints them."""
        head = {"training": self.training} if self.training is not None else {}
        return {**head, **{f"clean {d}": s for d, s in self.clean.items()}, **self.cells}

    def to_json(self) -> dict[str, Any]:
        return {"training": self.training, "clean": self.clean, "cells": self.cells}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Timings":
        """This shape, or the flat phase -> seconds map runs wrote before it ("training", "clean <d>", cell ids)."""
        if isinstance(data.get("cells"), dict) or isinstance(data.get("clean"), dict):
            training = data.get("training")
            return cls(float(training) if training is not None else None,
                       {str(k): float(v) for k, v in data.get("clean", {}).items()},
                       {str(k): float(v) for k, v in data.get("cells", {}).items()})
        flat = {str(k): float(v) for k, v in data.items()}
        return cls(flat.pop("training", None), {k[len("clean "):]: v for k, v in flat.items() if k.startswith("clean ")},
                   {k: v for k, v in flat.items() if not k.startswith("clean ")})


@dataclass
class Manifest:
    """A run's manifest.json: the grid, its cells, the defenses used and which cells are done."""

    fingerprint: str
    created: str
    grid: dict[str, Any]
    device: str
    versions: dict[str, str | None]
    cells: list[CellInfo]
    git_commit: str | None = None
    threads: int | None = None  # torch's CPU threads of each process that attacks (a worker, in a pool)
    defenses: dict[str, DefenseInfo] = field(default_factory=dict)
    finished: dict[str, CellChecksum] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)  # cell -> why it failed (the grid went on)
    skipped: dict[str, str] = field(default_factory=dict)  # cell -> why the attack does not apply
    content_keys: dict[str, str] = field(default_factory=dict)  # cell -> content key (advbench.reuse)
    reused: dict[str, str] = field(default_factory=dict)  # cell -> the earlier run its records were copied from
    adversarials: dict[str, str] = field(default_factory=dict)  # cell -> sha256 of its saved adversarial inputs
    timings: Timings = field(default_factory=Timings)
    schema_version: int = SCHEMA_VERSION

    @property
    def legacy(self) -> bool:
        """Written before cells were checksummed (schema 1): its records are read unchecked."""
        return self.schema_version < 2

    @property
    def resumable(self) -> bool:
        """Written by this schema: older runs are readable, but their records lack later columns,
        so they are neither resumed nor reused."""
        return self.schema_version == SCHEMA_VERSION

    def pending(self) -> list[CellInfo]:
        """Cells neither finished nor skipped (refused cells are pending: a resume retries them)."""
        return [c for c in self.cells if c.id not in self.finished and c.id not in self.skipped]

    @property
    def status(self) -> RunStatus:
        return RunStatus.COMPLETE if not self.pending() else RunStatus.INCOMPLETE

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version, "fingerprint": self.fingerprint, "created": self.created,
            "status": self.status.value, "grid": self.grid, "device": self.device, "versions": self.versions,
            "git_commit": self.git_commit, "threads": self.threads, "cells": [c.to_json() for c in self.cells],
            "defenses": {k: asdict(v) for k, v in self.defenses.items()},
            "finished": {k: asdict(v) for k, v in self.finished.items()},
            "refused": self.refused, "skipped": self.skipped, "content_keys": self.content_keys,
            "reused": self.reused, "adversarials": self.adversarials, "timings": self.timings.to_json(),
        }

    @classmethod
    def from_json(cls, data: Any, where: str) -> "Manifest":
        """Parse a manifest (schema 1, 2 or 3); anything malformed is one error naming `where`."""
        try:
            version = int(data.get("schema_version", 1))
            if version > SCHEMA_VERSION:
                raise AdvbenchError(f"{where} was written by a newer advbench (run schema {version}); upgrade advbench")
            return cls(
                fingerprint=str(data["fingerprint"]), created=str(data["created"]), grid=dict(data["grid"]),
                device=str(data.get("device", "")), versions=dict(data.get("versions", {})),
                cells=[CellInfo.from_json(c) for c in data["cells"]], git_commit=data.get("git_commit"),
                threads=int(data["threads"]) if data.get("threads") is not None else None,
                defenses={k: DefenseInfo.from_json(v) for k, v in data.get("defenses", {}).items()},
                finished={k: CellChecksum(int(v["rows"]), str(v["sha256"]))
                          for k, v in data.get("finished", {}).items()},
                refused=dict(data.get("refused", {})), skipped=dict(data.get("skipped", {})),
                content_keys=dict(data.get("content_keys", {})), reused=dict(data.get("reused", {})),
                adversarials=dict(data.get("adversarials", {})),
                timings=Timings.from_json(dict(data.get("timings", {}))), schema_version=version,
            )
        except AdvbenchError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise AdvbenchError(f"{where} is not a valid run manifest ({type(exc).__name__}: {exc})") from None

