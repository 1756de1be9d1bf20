"""`advbench runs`: one line per run under a results directory, with its status."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .store import list_runs


@dataclass(frozen=True)
class RunOverview:
    """One line of `advbench runs`: what a run is and whether its tables are whole."""

    run_id: str
    created: str
    dataset: str
    samples: str
    defenses: int
    attacks: int
    status: str  # "complete", "k of n cells", "k of n cells, m failed", or why it cannot be read


def run_overviews(results_dir: Path) -> list[RunOverview]:
    """Every run under `results_dir`, oldest first, with its status read from its manifest."""
    overviews = []
    for store in list_runs(results_dir):
        manifest = store.readable_manifest()
        if manifest is None:
            overviews.append(RunOverview(store.run_id, "", "", "", 0, 0, "unreadable manifest"))
            continue
        total = len(manifest.cells) - len(manifest.skipped)
        done = sum(1 for c in manifest.cells if c.id in manifest.finished)
        status = "complete" if done >= total else f"{done} of {total} cells"
        if manifest.refused:
            status += f", {len(manifest.refused)} failed"
        grid = manifest.grid
        overviews.append(RunOverview(store.run_id, manifest.created, str(grid.get("dataset", "")),
                                     str(grid.get("samples", "all")), len({c.defense for c in manifest.cells}),
                                     len({c.attack for c in manifest.cells}), status))
    return overviews
