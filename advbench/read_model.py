"""The read model: a run's verified records as typed cells, each cell's per-sample outcomes at
each epsilon computed once, and served to every view (summaries, worst cases, curves, McNemar,
reject metrics, trust flags).

`outcomes_at(cell, eps)` is what each sample of one cell looks like to the defense at one
epsilon: for a fixed-epsilon attack, the record at that epsilon; for a minimum-norm attack, the
attack's example when its norm is within eps, and the clean input otherwise (the attacker had
nothing better). `Run` keeps each result, so a report reads every (cell, epsilon) once however
many views ask for it: without that the worst cases re-read every cell at every epsilon and a
report's cost grew with the square of its cells.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Iterable

import numpy as np
import pandas as pd

from .contract import Access, AttackKind, CellInfo, CellRole, DefenseInfo, Manifest
from .errors import AdvbenchError
from .norms import BALL_TOLERANCE, Norm
from .store import RunStore

OUTCOME_COLUMNS = ["label", "clean_pred", "clean_score", "adv_pred", "adv_score", "l2", "linf", "x_l2", "seconds",
                   "queries"]


@dataclass(frozen=True, eq=False)
class CellRecords:
    """One cell's records and what they are, typed at the boundary: the unit every metric reads.

    `requested` are the epsilons the grid asked for: a minimum-norm cell is read at them (and at
    infinity); a fixed-epsilon cell is read at the epsilons it measured."""

    id: str
    defense: str
    attack: str
    norm: Norm
    kind: AttackKind
    frame: pd.DataFrame = field(repr=False)
    requested: tuple[float, ...] = ()
    role: CellRole = CellRole.EVALUATED
    info: CellInfo | None = field(default=None, repr=False)

    @classmethod
    def of(cls, frame: pd.DataFrame, requested: Iterable[float] = (), info: CellInfo | None = None) -> "CellRecords":
        head = frame.iloc[0]
        return cls(id=str(head["cell"]), defense=str(head["defense"]), attack=str(head["attack"]),
                   norm=Norm(head["norm"]), kind=AttackKind(head["kind"]), frame=frame,
                   requested=tuple(float(e) for e in requested),
                   role=info.role if info is not None else CellRole.EVALUATED, info=info)

    @property
    def minimum_norm(self) -> bool:
        return self.kind is AttackKind.MINIMUM_NORM

    @cached_property
    def access(self) -> Access:
        """What of the defense the attack used; runs recorded before the column existed count as gradient."""
        value = self.frame["access"].iloc[0] if "access" in self.frame else None
        return Access(value) if isinstance(value, str) and value else Access.GRADIENT

    @cached_property
    def measured(self) -> list[float]:
        """The epsilons a fixed-epsilon cell ran at (none for a minimum-norm cell)."""
        return [] if self.minimum_norm else sorted(set(self.frame["epsilon"].dropna()))

    @cached_property
    def epsilons(self) -> list[float]:
        """Epsilons the cell can be read at: its own for fixed-epsilon attacks; the requested ones
        plus `inf` (unbounded) for minimum-norm attacks."""
        return sorted(set(self.requested) | {math.inf}) if self.minimum_norm else self.measured

    def measured_at(self, eps: float) -> bool:
        return self.minimum_norm or any(math.isclose(e, eps, rel_tol=1e-9, abs_tol=1e-12) for e in self.measured)

    @cached_property
    def by_sample(self) -> pd.DataFrame:
        """One row per sample (the first), indexed by sample: the clean side of every record."""
        return self.frame.drop_duplicates("sample").set_index("sample")

    @cached_property
    def samples(self) -> pd.Index:
        return self.by_sample.index

    @cached_property
    def clean_correct(self) -> pd.Series:
        rows = self.by_sample
        return rows["clean_pred"] == rows["label"]

    @cached_property
    def attack_norms(self) -> pd.Series:
        """Perturbation size of each record in the attack's own norm."""
        return self.frame["l2" if self.norm is Norm.L2 else "linf"]

    @cached_property
    def _rows_by_epsilon(self) -> dict[float, pd.DataFrame]:
        indexed = self.frame.set_index("sample")
        return {float(eps): rows for eps, rows in indexed.groupby("epsilon", sort=True)}

    def rows_at(self, eps: float) -> pd.DataFrame:
        """A fixed-epsilon cell's records at `eps`, indexed by sample."""
        for measured, rows in self._rows_by_epsilon.items():
            if np.isclose(measured, eps):
                return rows
        raise KeyError(f"cell {self.id} was not run at epsilon {eps:g}")


def cell_records(records: pd.DataFrame, requested: dict[str, list[float]] | None = None,
                 infos: dict[str, CellInfo] | None = None) -> dict[str, CellRecords]:
    """Records split into typed cells, in record order."""
    requested, infos = requested or {}, infos or {}
    return {str(cell_id): CellRecords.of(frame, requested.get(str(cell_id), ()), infos.get(str(cell_id)))
            for cell_id, frame in records.groupby("cell", sort=False)}


def outcomes_at(cell: CellRecords, eps: float) -> pd.DataFrame:
    """Per-sample outcome of one cell at `eps`, indexed by sample.

    Columns: label, clean_pred, clean_score, pred, score, l2, linf, x_l2, seconds,
    queries, clean_ok, fooled (clean-correct and now wrong), robust.
    """
    if cell.minimum_norm:
        rows = cell.frame.set_index("sample")[OUTCOME_COLUMNS].copy()
        beyond = ~(cell.attack_norms.to_numpy() <= eps + BALL_TOLERANCE)
        rows.loc[beyond, "adv_pred"] = rows.loc[beyond, "clean_pred"]
        rows.loc[beyond, "adv_score"] = rows.loc[beyond, "clean_score"]
        rows.loc[beyond, ["l2", "linf"]] = 0.0
    else:
        rows = cell.rows_at(eps)[OUTCOME_COLUMNS]
    out = rows.rename(columns={"adv_pred": "pred", "adv_score": "score"})
    clean_ok = (out["clean_pred"] == out["label"]).to_numpy()
    fooled = clean_ok & (out["pred"] != out["label"]).to_numpy()
    return out.assign(clean_ok=clean_ok, fooled=fooled, robust=clean_ok & ~fooled)


def worst_case_outcomes(run: "Run", cells: list[CellRecords], eps: float) -> pd.DataFrame:
    """A sample is robust at `eps` only if it survives every attack with examples valid at
    `eps` (paper 004's "ALL" rows): minimum-norm attacks read at `eps`, fixed-epsilon attacks
    at each of their epsilons up to `eps`; so ALL is at or below every attack it covers, at
    every epsilon, and never rises with epsilon."""
    read = [run.outcomes(cell, e) for cell in cells for e in readable_at(cell, eps)]
    combined = cells[0].by_sample[["label", "clean_pred", "clean_score", "x_l2"]].copy()
    combined["clean_ok"] = combined["clean_pred"] == combined["label"]
    combined["robust"] = np.logical_and.reduce(
        [combined["clean_ok"].to_numpy()] + [o["robust"].reindex(combined.index, fill_value=False).to_numpy()
                                             for o in read])
    combined["fooled"] = combined["clean_ok"] & ~combined["robust"]
    combined["seconds"] = sum((o["seconds"] for o in read), 0.0)
    combined["queries"] = sum((o["queries"] for o in read), 0.0)
    return combined


def readable_at(cell: CellRecords, eps: float) -> list[float]:
    """The epsilons of `cell` whose examples are valid adversarials at `eps`: any point of a
    smaller ball lies in the larger one, so a fixed-epsilon cell counts at every measured
    epsilon up to `eps`; a minimum-norm cell is read at `eps` itself."""
    if cell.minimum_norm:
        return [eps]
    return [e for e in cell.measured if 0 < e <= eps + BALL_TOLERANCE]


def covered_attacks(cells: list[CellRecords], eps: float) -> list[str]:
    """The attacks a worst case at `eps` covers (those with examples valid at `eps`)."""
    return [cell.attack for cell in cells if readable_at(cell, eps)]


@dataclass
class Run:
    """The read model of one or more runs: verified records as typed cells, the defenses, and
    each cell's outcomes at each epsilon, computed on first use and kept."""

    records: pd.DataFrame
    cells: dict[str, CellRecords]
    defenses: dict[str, DefenseInfo] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)
    dataset: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    reused: int = 0
    _outcomes: dict[tuple[str, float], pd.DataFrame] = field(default_factory=dict, repr=False)
    _worst: dict[tuple[tuple[str, ...], float], pd.DataFrame] = field(default_factory=dict, repr=False)

    @classmethod
    def from_records(cls, records: pd.DataFrame, requested: dict[str, list[float]] | None = None,
                     infos: dict[str, CellInfo] | None = None, defenses: dict[str, DefenseInfo] | None = None,
                     ) -> "Run":
        """A read model over records in memory (tests, benches, a notebook)."""
        return cls(records, cell_records(records, requested, infos), dict(defenses or {}))

    @classmethod
    def open(cls, stores: list[RunStore]) -> "Run":
        """Records of one or more runs; runs are combined only when they evaluated the same samples."""
        frames, infos, defenses, notices, samples = [], {}, {}, [], None
        timings: dict[str, float] = {}
        reused = 0
        ids = [s.run_id for s in stores]
        if len(set(ids)) != len(ids):
            raise AdvbenchError(f"run {next(i for i in ids if ids.count(i) > 1)} is named more than once")
        for store in stores:
            manifest = store.manifest()
            records = store.records()
            run_samples = (manifest.grid.get("dataset"), frozenset(records["sample"]))
            if samples is not None and run_samples != samples:
                raise AdvbenchError(f"run {store.run_id} evaluated other samples than {stores[0].run_id}; "
                                    "combine only runs with the same dataset, samples and seed")
            samples = run_samples
            prefix = store.run_id + "/" if len(stores) > 1 else ""
            if prefix:
                records = records.assign(cell=prefix + records["cell"])
            frames.append(records)
            for cell in manifest.cells:
                if cell.id in manifest.finished:
                    infos[prefix + cell.id] = replace(cell, id=prefix + cell.id)
            defenses.update(manifest.defenses)
            notices += run_notices(store.run_id, manifest)
            timings.update({prefix + phase: seconds for phase, seconds in manifest.timings.phases().items()})
            reused += len(manifest.reused)
        records = _without_repeated_sanity(pd.concat(frames, ignore_index=True), infos)
        requested = {cell_id: list(info.epsilons) for cell_id, info in infos.items()}
        return cls(records, cell_records(records, requested, infos), defenses, notices,
                   str(samples[0]) if samples else "", timings, reused)

    @cached_property
    def groups(self) -> dict[tuple[str, Norm], list[CellRecords]]:
        """Cells of each (defense, norm), in record order."""
        groups: dict[tuple[str, Norm], list[CellRecords]] = {}
        for cell in self.cells.values():
            groups.setdefault((cell.defense, cell.norm), []).append(cell)
        return groups

    def outcomes(self, cell: CellRecords, eps: float) -> pd.DataFrame:
        """`outcomes_at(cell, eps)`, computed on first use."""
        key = (cell.id, float(eps))
        if key not in self._outcomes:
            self._outcomes[key] = outcomes_at(cell, eps)
        return self._outcomes[key]

    def worst_case(self, cells: list[CellRecords], eps: float) -> pd.DataFrame:
        """`worst_case_outcomes(cells, eps)`, computed on first use."""
        key = (tuple(cell.id for cell in cells), float(eps))
        if key not in self._worst:
            self._worst[key] = worst_case_outcomes(self, cells, eps)
        return self._worst[key]

    def robust_accuracy(self, cell: CellRecords, eps: float) -> float:
        return float(self.outcomes(cell, eps)["robust"].mean())

    def sanity_pairs(self) -> set[tuple[str, str]]:
        """(defense, attack) of the sanity cells, which check the others and stay out of figures."""
        return {(cell.defense, cell.attack) for cell in self.cells.values() if cell.role is CellRole.SANITY}


def _without_repeated_sanity(records: pd.DataFrame, infos: dict[str, CellInfo]) -> pd.DataFrame:
    """Every run carries its own sanity attacks: of combined runs keep the first run's; refuse two
    runs that evaluated the same defense x attack (their rows would be indistinguishable)."""
    pairs = records.drop_duplicates("cell")
    repeated_sanity = pairs.duplicated(["defense", "attack"]) & pairs["cell"].map(
        lambda cell: infos[cell].role is CellRole.SANITY)
    if repeated_sanity.any():
        dropped = set(pairs.loc[repeated_sanity, "cell"])
        records = records[~records["cell"].isin(dropped)]
        for cell_id in dropped:
            infos.pop(cell_id)
        pairs = pairs[~repeated_sanity]
    duplicated = pairs.duplicated(["defense", "attack"])
    if duplicated.any():
        pair = pairs[duplicated].iloc[0]
        raise AdvbenchError(f"{pair['defense']} x {pair['attack']} appears in more than one run; "
                            "label one of them differently to combine the runs")
    return records


def run_notices(run_id: str, manifest: Manifest) -> list[str]:
    """What a reader must know before trusting a run's tables: missing cells, old schema."""
    notices = []
    total = len(manifest.cells) - len(manifest.skipped)
    finished = sum(1 for c in manifest.cells if c.id in manifest.finished)
    if finished < total:
        detail = "; ".join(f"{cell}: {reason}" for cell, reason in manifest.refused.items())
        notices.append(f"INCOMPLETE run {run_id}: {finished} of {total} cells"
                       + (f" (failed: {detail})" if detail else " (the rest did not run; continue with --resume)"))
    if manifest.legacy:
        notices.append(f"run {run_id} was written before run schema 2: its records carry no checksums")
    return notices


__all__ = ["CellRecords", "Run", "cell_records", "covered_attacks", "outcomes_at", "readable_at",
           "run_notices", "worst_case_outcomes"]
