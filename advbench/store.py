"""results/<run-id>/ on disk: manifest, per-cell record files, summary; atomic writes and resume.

Every file is written to a temporary name in the same directory and renamed into
place, so an interrupted run never leaves a half-written file and never damages
an earlier one. A cell whose record file exists is finished; `--resume` skips it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import AdvbenchError

MANIFEST = "manifest.json"
RECORDS_DIR = "records"


def _file_mode() -> int:
    """Permissions a plain open() would give (mkstemp's 0600 would hide results from co-workers)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, _file_mode())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def default_results_dir() -> Path:
    return Path(os.environ.get("ADVBENCH_RESULTS", "results"))


def cell_file_name(cell_id: str) -> str:
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
        results_dir = Path(results_dir)
        try:
            results_dir.mkdir(parents=True, exist_ok=True)
            probe = tempfile.NamedTemporaryFile(dir=results_dir, prefix=".probe")
            probe.close()
        except OSError as exc:
            raise AdvbenchError(f"results directory {results_dir} is not writable: {exc.strerror}") from None
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        base = f"{stamp}-{fingerprint[:6]}"
        path, n = results_dir / base, 1
        while path.exists():
            n += 1
            path = results_dir / f"{base}-{n}"
        (path / RECORDS_DIR).mkdir(parents=True)
        return cls(path)

    @classmethod
    def open(cls, results_dir: Path, run_id: str | None = None) -> "RunStore":
        """A named run, or the latest one when `run_id` is None."""
        results_dir = Path(results_dir)
        if run_id is not None:
            candidate = Path(run_id) if Path(run_id).is_dir() else results_dir / run_id
            if not (candidate / MANIFEST).exists():
                raise AdvbenchError(f"no run {run_id!r} in {results_dir}")
            return cls(candidate)
        runs = list_runs(results_dir)
        if not runs:
            raise AdvbenchError(f"no runs in {results_dir}; start one with: advbench run")
        return runs[-1]

    @classmethod
    def latest_matching(cls, results_dir: Path, fingerprint: str) -> "RunStore | None":
        for run in reversed(list_runs(results_dir)):
            if run.manifest().get("fingerprint") == fingerprint:
                return run
        return None

    def manifest(self) -> dict[str, Any]:
        try:
            return json.loads((self.path / MANIFEST).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise AdvbenchError(f"run {self.run_id}: unreadable manifest ({exc})") from None

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        atomic_write_text(self.path / MANIFEST, json.dumps(manifest, indent=2, default=str) + "\n")

    def record_path(self, cell_id: str) -> Path:
        return self.path / RECORDS_DIR / cell_file_name(cell_id)

    def has_cell(self, cell_id: str) -> bool:
        return self.record_path(cell_id).exists()

    def write_cell(self, cell_id: str, records: pd.DataFrame) -> None:
        atomic_write_text(self.record_path(cell_id), records.to_csv(index=False))

    def part_path(self, cell_id: str, start: int) -> Path:
        """A shard of a cell (samples from `start`), written by one distributed task."""
        return self.record_path(cell_id).with_suffix(f".part-{start:07d}.csv")

    def has_part(self, cell_id: str, start: int) -> bool:
        return self.part_path(cell_id, start).exists()

    def write_part(self, cell_id: str, start: int, records: pd.DataFrame) -> None:
        atomic_write_text(self.part_path(cell_id, start), records.to_csv(index=False))

    def merge_parts(self, cell_id: str, starts: list[int]) -> None:
        """Join a cell's shards, in sample order, into its cell file; then drop the shards."""
        parts = [self.part_path(cell_id, start) for start in sorted(starts)]
        self.write_cell(cell_id, pd.concat([pd.read_csv(p) for p in parts], ignore_index=True))
        for part in parts:
            part.unlink()

    def records(self) -> pd.DataFrame:
        """All finished cells' per-sample records, in manifest cell order."""
        frames = []
        for cell in self.manifest().get("cells", []):
            path = self.record_path(cell["id"])
            if path.exists():
                frames.append(pd.read_csv(path))
        if not frames:
            raise AdvbenchError(f"run {self.run_id} has no finished cells yet")
        return pd.concat(frames, ignore_index=True)


def list_runs(results_dir: Path) -> list[RunStore]:
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        return []
    runs = [RunStore(p) for p in results_dir.iterdir() if (p / MANIFEST).is_file()]
    return sorted(runs, key=lambda r: (r.manifest().get("created", ""), r.run_id))
