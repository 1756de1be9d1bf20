"""results/<run-id>/ on disk: manifest, per-cell record files, summary; atomic writes and resume.

Every file is written to a temporary name in the same directory and renamed into
place, so an interrupted run never leaves a half-written file and never damages an
earlier one. Record files are named by a hash of their cell id (two ids never share a
file) and a cell counts as finished only when the manifest holds its row count and
checksum and the file still matches them. A lock file keeps two processes from
running the same run at once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import math
import json
import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import pandas as pd

from .contract import LATER_COLUMNS, RECORD_COLUMNS, RECORD_SCHEMA, CellChecksum, Manifest
from .errors import AdvbenchError
from .files import atomic_write_bytes, atomic_write_text, sha256_bytes, sha256_file
from .run_lock import hold

__all__ = ["RunStore", "DamagedRecordsError", "atomic_write_bytes", "atomic_write_text", "sha256_bytes",
           "sha256_file", "default_results_dir", "list_runs", "read_records_csv"]

if TYPE_CHECKING:
    import torch

MANIFEST = "manifest.json"
RECORDS_DIR = "records"
ADVERSARIALS_DIR = "adversarials"
LOCK = "run.lock"


class DamagedRecordsError(AdvbenchError):
    """A finished cell's records file is missing, truncated, altered or belongs to another cell."""


def default_results_dir() -> Path:
    return Path(os.environ.get("ADVBENCH_RESULTS", "results"))


def cell_file_name(cell_id: str) -> str:
    """A collision-free file name: a readable prefix plus a hash of the whole id."""
    readable = re.sub(r"[^A-Za-z0-9_.=+-]", "_", cell_id)[:40]
    return f"{readable}-{hashlib.sha256(cell_id.encode()).hexdigest()[:16]}.csv"


def with_later_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Records of an older schema with the columns added since, blank (no component, no trace)."""
    for columns in LATER_COLUMNS.values():
        for column in columns:
            if column not in frame:
                frame[column] = "" if RECORD_SCHEMA[column] == "str" else math.nan
    if "component" in frame:
        frame["component"] = frame["component"].astype(object).where(frame["component"].notna(), "").astype(str)
    return frame


def read_records_csv(source: Path | bytes) -> pd.DataFrame:
    """A records CSV with every text column read as text: a label `5` stays the string "5" and a
    label `nan` stays "nan" (pandas would turn them into a number and a missing value)."""
    text_columns = [c for c, kind in RECORD_SCHEMA.items() if kind == "str"]
    numbers_missing = {c: ["", "nan", "NaN"] for c, kind in RECORD_SCHEMA.items() if kind != "str"}
    handle = io.BytesIO(source) if isinstance(source, bytes) else source
    return pd.read_csv(handle, dtype={c: str for c in text_columns}, keep_default_na=False, na_values=numbers_missing)


def legacy_cell_file_name(cell_id: str) -> str:
    """Schema-1 runs named files by the sanitised id alone (which could collide)."""
    return re.sub(r"[^A-Za-z0-9_.=+-]", "_", cell_id) + ".csv"


class RunStore:
    """One run directory: the manifest, one CSV of per-sample records per cell, the summary."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @property
    def run_id(self) -> str:
        return self.path.name

    @classmethod
    def create(cls, results_dir: Path, fingerprint: str) -> "RunStore":
        """A new, empty run directory; its name is claimed atomically (two runs started in
        the same second get different directories)."""
        results_dir = Path(results_dir)
        try:
            results_dir.mkdir(parents=True, exist_ok=True)
            probe = tempfile.NamedTemporaryFile(dir=results_dir, prefix=".probe")
            probe.close()
        except OSError as exc:
            raise AdvbenchError(f"results directory {results_dir} is not writable: {exc.strerror}") from None
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        base, n = f"{stamp}-{fingerprint[:6]}", 1
        while True:
            path = results_dir / (base if n == 1 else f"{base}-{n}")
            try:
                path.mkdir()  # fails if another process claimed the name first
                break
            except FileExistsError:
                n += 1
        (path / RECORDS_DIR).mkdir()
        return cls(path)

    @classmethod
    def open(cls, results_dir: Path, run_id: str | None = None) -> "RunStore":
        """A named run, or the latest one with at least one finished cell when `run_id` is None."""
        results_dir = Path(results_dir)
        if run_id is not None:
            candidate = Path(run_id) if Path(run_id).is_dir() else results_dir / run_id
            if not (candidate / MANIFEST).exists():
                raise AdvbenchError(f"no run {run_id!r} in {results_dir}")
            return cls(candidate)
        runs = [r for r in list_runs(results_dir) if r.readable_manifest() and r.manifest().finished]
        if not runs:
            raise AdvbenchError(f"no finished runs in {results_dir}; start one with: advbench run")
        return runs[-1]

    @classmethod
    def latest_matching(cls, results_dir: Path, fingerprint: str) -> "RunStore | None":
        for run in reversed(list_runs(results_dir)):
            manifest = run.readable_manifest()
            if manifest is not None and manifest.fingerprint == fingerprint:
                return run
        return None

    # ------------------------------------------------------------------ manifest
    def manifest(self) -> Manifest:
        path = self.path / MANIFEST
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise AdvbenchError(f"run {self.run_id} has no manifest ({path})") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise AdvbenchError(f"run {self.run_id}: unreadable manifest {path} ({exc})") from None
        manifest = Manifest.from_json(data, f"run {self.run_id}: {path}")
        if manifest.legacy:
            manifest.finished = self._legacy_finished(manifest)
        return manifest

    def readable_manifest(self) -> Manifest | None:
        """The manifest, or None when it is damaged (a damaged run must not block the others)."""
        try:
            return self.manifest()
        except AdvbenchError:
            return None

    def write_manifest(self, manifest: Manifest) -> None:
        atomic_write_text(self.path / MANIFEST, json.dumps(manifest.to_json(), indent=2, default=str) + "\n")

    def _legacy_finished(self, manifest: Manifest) -> dict[str, CellChecksum]:
        found = {}
        for cell in manifest.cells:
            path = self.path / RECORDS_DIR / legacy_cell_file_name(cell.id)
            if path.exists():
                found[cell.id] = CellChecksum(-1, "")  # unknown: schema 1 kept no checksums
        return found

    # ------------------------------------------------------------------ cells
    def record_path(self, cell_id: str, legacy: bool = False) -> Path:
        name = legacy_cell_file_name(cell_id) if legacy else cell_file_name(cell_id)
        return self.path / RECORDS_DIR / name

    def write_cell(self, cell_id: str, records: pd.DataFrame) -> CellChecksum:
        """Write a cell's records atomically; the returned checksum goes into the manifest."""
        if list(records.columns) != RECORD_COLUMNS:
            raise AdvbenchError(f"cell {cell_id}: records do not follow the record schema")
        if not (records["cell"] == cell_id).all():
            raise AdvbenchError(f"cell {cell_id}: records carry another cell id")
        data = records.to_csv(index=False).encode("utf-8")
        atomic_write_bytes(self.record_path(cell_id), data)
        return CellChecksum(len(records), sha256_bytes(data))

    def cell_problem(self, cell_id: str, checksum: CellChecksum | None) -> str | None:
        """Why a cell's records cannot be trusted, or None when the file matches its checksum."""
        if checksum is None:
            return "not finished"
        if checksum.rows < 0:  # schema 1
            return None if self.record_path(cell_id, legacy=True).exists() else "records file is missing"
        path = self.record_path(cell_id)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return f"records file {path} is missing"
        if sha256_bytes(data) != checksum.sha256:
            return f"records file {path} was changed or damaged after it was written (checksum mismatch)"
        return None

    def read_cell(self, cell_id: str, checksum: CellChecksum) -> pd.DataFrame:
        """A finished cell's records, checked against its checksum, row count and id."""
        problem = self.cell_problem(cell_id, checksum)
        if problem:
            raise DamagedRecordsError(f"run {self.run_id}, cell {cell_id}: {problem}; rerun it with --resume")
        legacy = checksum.rows < 0
        path = self.record_path(cell_id, legacy=legacy)
        try:
            frame = read_records_csv(path.read_bytes())
        except (ValueError, pd.errors.ParserError) as exc:
            raise DamagedRecordsError(f"run {self.run_id}, cell {cell_id}: records file {path} does not parse "
                                      f"({exc})") from None
        if not legacy and len(frame) != checksum.rows:
            raise DamagedRecordsError(f"run {self.run_id}, cell {cell_id}: {len(frame)} records, expected "
                                      f"{checksum.rows}")
        if "cell" not in frame or not (frame["cell"].astype(str) == cell_id).all():
            raise DamagedRecordsError(f"run {self.run_id}, cell {cell_id}: file {path} holds another cell's records")
        return with_later_columns(frame)

    def copy_cell(self, earlier: "RunStore", cell_id: str, checksum: CellChecksum) -> CellChecksum:
        """Copy a finished cell's records (byte for byte, after checking them) from an earlier run."""
        path = earlier.record_path(cell_id)
        try:
            data = path.read_bytes()
        except OSError:
            raise DamagedRecordsError(f"run {earlier.run_id}, cell {cell_id}: records file {path} is unreadable") from None
        if sha256_bytes(data) != checksum.sha256:
            raise DamagedRecordsError(f"run {earlier.run_id}, cell {cell_id}: records file {path} was changed or "
                                      "damaged after it was written (checksum mismatch)")
        atomic_write_bytes(self.record_path(cell_id), data)  # the bytes that were checked
        return checksum

    # ------------------------------------------------------------------ saved adversarial inputs
    def adversarials_path(self, cell_id: str) -> Path:
        return self.path / ADVERSARIALS_DIR / cell_file_name(cell_id).replace(".csv", ".pt")

    def write_adversarials(self, cell_id: str, saved: dict) -> str:
        """Write a cell's adversarial inputs atomically (`torch.save` of `saved`); returns the file's sha256."""
        import torch

        buffer = io.BytesIO()
        torch.save(saved, buffer)
        data = buffer.getvalue()
        atomic_write_bytes(self.adversarials_path(cell_id), data)
        return sha256_bytes(data)

    def read_adversarials(self, cell_id: str, sha256: str) -> dict:
        """A cell's saved adversarial inputs, checked against the manifest's checksum."""
        import torch

        path = self.adversarials_path(cell_id)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise DamagedRecordsError(f"run {self.run_id}, cell {cell_id}: adversarials file {path} is missing") from None
        if sha256_bytes(data) != sha256:
            raise DamagedRecordsError(f"run {self.run_id}, cell {cell_id}: adversarials file {path} was changed "
                                      "after it was written (checksum mismatch)")
        try:
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - pickled code, truncation and foreign formats alike
            raise DamagedRecordsError(f"run {self.run_id}, cell {cell_id}: adversarials file {path} is not a tensor "
                                      f"file advbench wrote ({type(exc).__name__}; nothing in it was run); rerun the "
                                      "cell with --save-adversarials") from None

    def copy_adversarials(self, earlier: "RunStore", cell_id: str, sha256: str) -> str:
        """Copy the bytes that were checked (a file replaced meanwhile is never copied unchecked)."""
        data = earlier.adversarials_path(cell_id).read_bytes()
        if sha256_bytes(data) != sha256:
            raise DamagedRecordsError(f"run {earlier.run_id}, cell {cell_id}: adversarials file was changed after it "
                                      "was written (checksum mismatch)")
        atomic_write_bytes(self.adversarials_path(cell_id), data)
        return sha256

    def part_path(self, cell_id: str, start: int) -> Path:
        """A finished batch (local runs) or shard (Ray tasks) of a cell: samples from `start`."""
        return self.record_path(cell_id).with_suffix(f".part-{start:07d}.csv")

    def adversarials_part_path(self, cell_id: str, start: int) -> Path:
        return self.adversarials_path(cell_id).with_suffix(f".part-{start:07d}.pt")

    def has_part(self, cell_id: str, start: int) -> bool:
        return self.part_path(cell_id, start).exists()

    def write_part(self, cell_id: str, start: int, records: pd.DataFrame,
                   adversarials: "torch.Tensor | None" = None) -> None:
        """Write a part atomically; its saved adversarial inputs (when kept) go first, so a
        records part on disk always has them beside it."""
        if adversarials is not None:
            import torch

            buffer = io.BytesIO()
            torch.save(adversarials.detach().cpu().contiguous(), buffer)
            atomic_write_bytes(self.adversarials_part_path(cell_id, start), buffer.getvalue())
        atomic_write_text(self.part_path(cell_id, start), records.to_csv(index=False))

    def read_part(self, cell_id: str, start: int) -> pd.DataFrame | None:
        """A part's records, or None when it is missing or does not parse (it is computed again)."""
        try:
            return read_records_csv(self.part_path(cell_id, start))
        except (OSError, ValueError, pd.errors.ParserError):
            return None

    def read_adversarials_part(self, cell_id: str, start: int) -> "torch.Tensor | None":
        """A part's saved adversarial inputs, read as tensors only; None when missing or unreadable."""
        import torch

        try:
            value = torch.load(self.adversarials_part_path(cell_id, start), map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - missing, damaged or foreign: the batch is computed again
            return None
        return value if isinstance(value, torch.Tensor) else None

    def merge_parts(self, cell_id: str, starts: list[int]) -> CellChecksum:
        """Join a cell's parts, in sample order, into its cell file. The parts stay until
        `drop_parts` (after the manifest records the cell), so an interruption loses nothing."""
        parts = [self.part_path(cell_id, start) for start in sorted(starts)]
        return self.write_cell(cell_id, pd.concat([read_records_csv(p) for p in parts], ignore_index=True))

    def part_starts(self, cell_id: str) -> list[int]:
        """The starts of the records parts a cell has on disk."""
        prefix = self.record_path(cell_id).stem + ".part-"
        return sorted(int(p.name[len(prefix):-4]) for p in self.path.glob(f"{RECORDS_DIR}/*.part-*.csv")
                      if p.name.startswith(prefix))

    def kept_work(self) -> str:
        """What an interrupted run keeps, for the interruption message."""
        manifest = self.readable_manifest()
        if manifest is None:
            return f"nothing was finished in {self.path}"
        unfinished = [c.id for c in manifest.cells if c.id not in manifest.finished and c.id not in manifest.skipped]
        batches = [len(self.part_starts(cell_id)) for cell_id in unfinished]
        return (f"{len(manifest.finished)} finished cell(s) and {sum(batches)} finished batch(es) of "
                f"{sum(1 for b in batches if b)} unfinished cell(s) are kept in {self.path}")

    def drop_parts(self, cell_id: str) -> None:
        """Remove a cell's parts (records and saved adversarial inputs)."""
        for start in self.part_starts(cell_id):
            self.part_path(cell_id, start).unlink(missing_ok=True)
        stem = self.adversarials_path(cell_id).stem + ".part-"
        for path in self.path.glob(f"{ADVERSARIALS_DIR}/*.part-*.pt"):
            if path.name.startswith(stem):
                path.unlink(missing_ok=True)

    def records(self) -> pd.DataFrame:
        """All finished cells' verified per-sample records, in manifest cell order."""
        manifest = self.manifest()
        frames = [self.read_cell(c.id, manifest.finished[c.id]) for c in manifest.cells if c.id in manifest.finished]
        if not frames:
            raise AdvbenchError(f"run {self.run_id} has no finished cells yet")
        return pd.concat(frames, ignore_index=True)

    # ------------------------------------------------------------------ lock
    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run for this process (`advbench.run_lock.hold`): a second `--resume` of the
        same run stops at once instead of duplicating work."""
        with hold(self.path / LOCK, f"run {self.run_id}"):
            yield


def list_runs(results_dir: Path) -> list[RunStore]:
    """Runs in creation order; a run with a damaged manifest sorts by name and is skipped by readers."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        return []
    runs = [RunStore(p) for p in results_dir.iterdir() if (p / MANIFEST).is_file()]

    def created(run: RunStore) -> tuple[str, str]:
        manifest = run.readable_manifest()
        return (manifest.created if manifest else "", run.run_id)

    return sorted(runs, key=created)
