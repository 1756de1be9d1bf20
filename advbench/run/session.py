"""What both executors share around the cells they run: opening the run, inspecting each
defense, carrying out the schedule's skip / refuse / reuse decisions, and finishing a cell.

An executor opens a `Session`, asks it for the jobs (`Session.jobs`: inspection, then the
pure `schedule`, then the decisions recorded), runs the cells left, and calls `finish` or
`refuse` for each. The manifest is written after every change, so an interruption loses at
most the batch in progress.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import groupby

from ..defenses.base import Prediction
from ..errors import AdvbenchError
from ..progress import Observer
from ..reuse import CellIndex, content_key
from ..store import RunStore
from ..contract import Manifest
from .estimate import announce_estimate, seconds_per_evaluation
from .manifest import describe_defense, open_manifest
from .models import ModelCache, model_cache, model_key
from .parts import CellParts, saved_adversarials
from .plan import Plan, PlannedCell, PlannedDefense
from .schedule import Action, CellJob, DefenseFacts, schedule
from .target import SharedCleanGradients, attack_target


@dataclass
class Session:
    """One run being written: its plan, store, manifest and loaded models."""

    plan: Plan
    store: RunStore
    manifest: Manifest
    models: ModelCache
    observer: Observer
    earlier: CellIndex | None
    estimates: dict[str, float] = field(default_factory=dict)  # cell id -> ceiling seconds per sample
    gradients: dict[str, SharedCleanGradients] = field(default_factory=dict)  # by defense id
    probe_predictions: dict[str, Prediction] = field(default_factory=dict)  # a defense's first batch, clean
    timed: dict[str, float] = field(default_factory=dict)  # model spec -> seconds per gradient evaluation

    @classmethod
    def open(cls, plan: Plan, store: RunStore, observer: Observer, reuse: bool) -> "Session":
        """Open (or resume) the run in `store`; call inside `store.lock()`."""
        manifest = open_manifest(store, plan, observer)
        earlier = CellIndex(store.path.parent, exclude=store.path) if reuse else None
        done = len(manifest.finished) + len(manifest.skipped)
        if done:
            observer.message(f"resuming: {done} of {len(plan.cells)} cells already finished")
        return cls(plan, store, manifest, model_cache(plan), observer, earlier)

    def pending(self) -> int:
        return sum(1 for c in self.plan.cells if c.id not in self.manifest.finished
                   and c.id not in self.manifest.skipped)

    def jobs(self, fail_fast: bool = False) -> list[CellJob]:
        """The cells to run: every defense inspected, the schedule's other decisions recorded;
        with `fail_fast`, the first refusal raises."""
        facts = {d.id: self.inspect(d) for d in self.plan.defenses if self.unfinished(d)}
        for found in facts.values():
            self.manifest.content_keys.update(found.keys)
        self.store.write_manifest(self.manifest)
        todo = []
        for job in schedule(self.manifest, self.plan, facts):
            if job.action is Action.RUN or (job.action is Action.REUSE and not self.reuse(job)):
                todo.append(job)
                continue
            if job.action is Action.SKIP:
                self.manifest.skipped[job.id] = job.reason
                self.store.write_manifest(self.manifest)
                self.observer.message(f"skipped {job.id}: {job.reason}")
            elif job.action is Action.REFUSE:
                self.refuse(job.cell, job.reason)
                if fail_fast:
                    raise AdvbenchError(job.reason)
        return todo

    def unfinished(self, defense: PlannedDefense) -> list[PlannedCell]:
        return [c for c in defense.cells if c.id not in self.manifest.finished and c.id not in self.manifest.skipped]

    def inspect(self, defense: PlannedDefense) -> DefenseFacts:
        """Load and describe `defense`, then find for each unfinished cell whether its attack
        applies, its content key and a verified earlier copy; problems become facts, not errors."""
        plan, found = self.plan, DefenseFacts()
        try:
            model = self.models.get(*model_key(defense.spec))
            probe = plan.samples_for(defense.spec).inputs[:plan.grid.batch_size].to(plan.device)
            described = describe_defense(self.manifest, defense.id, model, defense.spec.spec, probe, self.observer,
                                         self.models.checkpoints[model_key(defense.spec)], plan.data.info.num_classes)
            if described.weights_changed:
                for cell in defense.cells:  # batches of the earlier weights must not join the new ones
                    self.store.drop_parts(cell.id)
            if described.probe_prediction is not None:
                self.probe_predictions[defense.id] = described.probe_prediction
        except AdvbenchError as exc:
            found.refused = str(exc)
            return found
        for cell in self.unfinished(defense):
            try:
                source = self.models.get(cell.plan.attack.source) if cell.plan.attack.source else None
                target, _ = attack_target(source or model, 1, plan.data.info.bounds, plan.data.info.num_classes)
                reason = cell.attack.unsupported(target)
                if reason:
                    found.unsupported[cell.id] = reason
                    continue
                found.keys[cell.id] = content_key(cell.plan, cell.attack, plan.grid, plan.data.info.name,
                                                  plan.samples_for(defense.spec).indices, self.manifest, model,
                                                  source)
                copy = self.earlier.find(found.keys[cell.id], cell.id, plan.grid.save_adversarials,
                                         self.observer.message) if self.earlier is not None else None
                if copy is not None:
                    found.earlier[cell.id] = copy
            except AdvbenchError as exc:
                found.errors[cell.id] = str(exc)
        return found

    def reuse(self, job: CellJob) -> bool:
        """Copy the cell from the earlier run the schedule found; False (with a warning) when
        the copy changed since it was checked: the cell is then computed again, never failed."""
        found, cell_id = job.earlier, job.id
        assert found is not None
        try:
            adversarials = (self.store.copy_adversarials(found.store, cell_id, found.adversarials)
                            if found.adversarials else None)
            checksum = self.store.copy_cell(found.store, cell_id, found.checksum)
        except (AdvbenchError, OSError) as exc:
            self.observer.message(f"warning: cell {cell_id}: the copy in earlier run {found.store.run_id} is not "
                                  f"reused: {exc}; it is computed again")
            return False
        if adversarials is not None:
            self.manifest.adversarials[cell_id] = adversarials
        self.manifest.finished[cell_id] = checksum
        self.manifest.reused[cell_id] = found.store.run_id
        self.manifest.refused.pop(cell_id, None)
        self.store.write_manifest(self.manifest)
        self.observer.detail(f"cell {cell_id}: reused from run {found.store.run_id} (same data, samples, weights "
                              "and attack settings; --fresh reruns it)")
        return True

    def estimate(self, todo: list[CellJob]) -> float:
        """Time every defense of `todo` up front, say which will take long, and return the
        expected seconds of all of it: the work a grid's progress bar counts down, so its time
        left weighs an ensemble cell of a ten-network defense above a 20-step PGD on a small cnn."""
        for _, jobs in groupby(todo, key=lambda job: job.cell.plan.defense):
            self.announce_estimate(list(jobs))
        return sum(self.cell_work(job.cell) for job in todo)

    def cell_work(self, cell: PlannedCell) -> float:
        """Expected seconds of `cell` on all its samples (0 when it was not timed)."""
        return self.expected_seconds(cell) * len(self.plan.samples_for(cell.plan.defense))

    def announce_estimate(self, jobs: list[CellJob]) -> None:
        """Say up front when one defense's cells to run will take long."""
        spec, plan = jobs[0].cell.plan.defense, self.plan
        samples = plan.samples_for(spec)

        def source_seconds(source: str) -> float:  # a transfer's source: timed once, on these samples
            if source not in self.timed:
                probe = slice(0, plan.grid.batch_size)
                self.timed[source] = seconds_per_evaluation(self.models.get(source), samples.inputs[probe].to(plan.device),
                                                            samples.labels[probe].to(plan.device), plan.data)
            return self.timed[source]

        found = announce_estimate(spec.id, self.models.get(*model_key(spec)), [job.cell for job in jobs],
                                  samples.inputs, samples.labels, plan.data, plan.grid.batch_size, plan.device,
                                  self.observer, self.clean_gradients(spec.id), source_seconds)
        if found.seconds_per_evaluation is not None and spec.weights is None and not spec.train:
            self.timed.setdefault(spec.spec, found.seconds_per_evaluation)
        self.estimates.update(found.cells)

    def clean_gradients(self, defense_id: str) -> SharedCleanGradients:
        """The clean gradient norms the defense's cells (and its estimate) share in this process."""
        if defense_id not in self.gradients:
            spec = next(d.spec for d in self.plan.defenses if d.id == defense_id)
            self.gradients[defense_id] = SharedCleanGradients(self.models.get(*model_key(spec)))
        return self.gradients[defense_id]

    def expected_seconds(self, cell: PlannedCell) -> float:
        """The estimate's ceiling per sample of `cell` (0 when it was not timed)."""
        return self.estimates.get(cell.id, 0.0)

    def parts(self, cell: PlannedCell) -> CellParts:
        return CellParts(self.store, cell.plan, cell.attack, self.plan.samples_for(cell.plan.defense).indices,
                         self.plan.grid.batch_size,
                         self.plan.grid.save_adversarials)

    def finish(self, cell: PlannedCell, seconds: float) -> None:
        """Join the cell's batch parts into its records (and saved inputs) and record it finished."""
        parts = self.parts(cell)
        if self.plan.grid.save_adversarials:
            self.manifest.adversarials[cell.id] = self.store.write_adversarials(
                cell.id, saved_adversarials(cell.plan, cell.attack, self.plan.samples_for(cell.plan.defense).indices,
                                            parts.adversarials()))
        self.manifest.finished[cell.id] = self.store.merge_parts(cell.id, parts.starts)
        self.manifest.timings.cells[cell.id] = round(seconds, 3)
        self.manifest.refused.pop(cell.id, None)
        self.store.write_manifest(self.manifest)
        self.store.drop_parts(cell.id)

    def refuse(self, cell: PlannedCell, reason: str) -> None:
        self.manifest.refused[cell.id] = reason
        self.store.write_manifest(self.manifest)
        self.observer.message(f"cell {cell.id} failed: {reason}")
