"""What happens to each cell of a run: one pure decision both executors share.

`schedule` reads the manifest (what is finished or skipped), the plan and what inspecting
each defense found (`DefenseFacts`: a refusal, unsupported attacks, content keys, verified
earlier copies, per-cell errors) and says, per cell, run, reuse, skip, refuse or done,
with the reason. It reads no file and writes nothing; the executors only carry it out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Mapping

from ..contract import Manifest
from ..reuse import EarlierCell
from .plan import Plan, PlannedCell


class Action(str, Enum):
    RUN = "run"
    REUSE = "reuse"  # copy an earlier run's verified cell with the same content key
    SKIP = "skip"  # the attack does not apply to this defense (recorded, never run)
    REFUSE = "refuse"  # the defense or the cell cannot be evaluated (recorded with the reason)
    DONE = "done"  # finished or skipped in this run already


@dataclass
class DefenseFacts:
    """What loading and describing one defense found out, for `schedule` to decide on."""

    refused: str | None = None  # the defense cannot be evaluated at all
    unsupported: dict[str, str] = field(default_factory=dict)  # cell id -> why the attack does not apply
    errors: dict[str, str] = field(default_factory=dict)  # cell id -> why it cannot be planned further
    keys: dict[str, str] = field(default_factory=dict)  # cell id -> content key
    earlier: dict[str, EarlierCell] = field(default_factory=dict)  # cell id -> a verified earlier copy


@dataclass(frozen=True)
class CellJob:
    cell: PlannedCell
    action: Action
    reason: str = ""
    earlier: EarlierCell | None = None

    @property
    def id(self) -> str:
        return self.cell.id


def schedule(manifest: Manifest, plan: Plan, facts: Mapping[str, DefenseFacts]) -> list[CellJob]:
    """One job per planned cell, in the plan's order (see the module docstring)."""
    jobs = []
    for defense in plan.defenses:
        found = facts.get(defense.id, DefenseFacts())
        for cell in defense.cells:
            jobs.append(decide(cell, manifest, found))
    return jobs


def decide(cell: PlannedCell, manifest: Manifest, facts: DefenseFacts) -> CellJob:
    if cell.id in manifest.finished:
        return CellJob(cell, Action.DONE, "finished")
    if cell.id in manifest.skipped:
        return CellJob(cell, Action.DONE, manifest.skipped[cell.id])
    if facts.refused is not None:
        return CellJob(cell, Action.REFUSE, facts.refused)
    if cell.id in facts.errors:
        return CellJob(cell, Action.REFUSE, facts.errors[cell.id])
    if cell.id in facts.unsupported:
        return CellJob(cell, Action.SKIP, facts.unsupported[cell.id])
    if cell.id in facts.earlier:
        return CellJob(cell, Action.REUSE, f"reused from run {facts.earlier[cell.id].store.run_id}",
                       facts.earlier[cell.id])
    return CellJob(cell, Action.RUN)


def runnable(jobs: list[CellJob]) -> list[CellJob]:
    return [job for job in jobs if job.action is Action.RUN]
