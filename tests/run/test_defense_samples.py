"""A defense may take fewer of a grid's samples (`samples` in its table): an expensive model gets
a smaller sample in the same grid (issue 22's demo), on the first of the grid's samples."""

from __future__ import annotations

from pathlib import Path

import pytest

from advbench.comparisons import mcnemar_table
from advbench.config import grid_from_dict
from advbench.errors import AdvbenchError
from advbench.metrics import summarize
from advbench.read_model import Run
from advbench.run import Paths, prepare, run_grid
from advbench.store import RunStore

REPO_ZOO = Path(__file__).parents[2] / "zoo"
GRID = {"samples": 24, "batch_size": 10, "sanity": False, "reuse": False,
        "defenses": ["cnn", {"name": "pgd-at", "samples": 9}],
        "attacks": [{"name": "pgd-linf", "epsilons": [0.1, 0.2], "steps": 5}]}


def test_a_defense_is_evaluated_on_the_first_of_the_grids_samples(tmp_path, digits):
    grid = grid_from_dict(GRID)
    plan = prepare(grid, Paths(zoo_dir=REPO_ZOO), data=digits)
    store = RunStore.create(tmp_path, grid.fingerprint())
    run_grid(grid, digits, store, plan=plan)
    records = store.records()
    by_defense = {d: sorted(set(group["sample"])) for d, group in records.groupby("defense")}
    assert len(by_defense["cnn"]) == 24 and len(by_defense["pgd-at"]) == 9
    assert by_defense["pgd-at"] == sorted(plan.samples.indices[:9].tolist())  # the first nine, not any nine

    run = Run.open([store])
    summary = summarize(run)
    assert set(summary.loc[summary["defense"] == "pgd-at", "samples"]) == {9}
    table = mcnemar_table(run, summary)
    assert table["pvalue"].notna().all()  # compared on the nine samples both saw, none refused
    assert (table["samples"] == 9).all()
    assert table["note"].str.contains("9 samples both").all()


@pytest.mark.parametrize("samples", [0, -3, "10", True])
def test_bad_defense_samples_are_one_error(samples):
    grid = {**GRID, "defenses": [{"name": "cnn", "samples": samples}]}
    with pytest.raises(AdvbenchError, match="samples must be a positive integer"):
        grid_from_dict(grid)
