"""Runner: per-sample records, determinism, resume, verification failing a cell."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from advbench.attacks.base import Attack
from advbench.contract import SCHEMA_VERSION, AttackKind
from advbench.config import grid_from_dict, load_grid, preset_path
from advbench.errors import AttackVerificationError
from advbench.metrics import summarize
from advbench.read_model import Run
from advbench.norms import Norm
from advbench.registry import attacks
from advbench.contract import RECORD_COLUMNS
from advbench.run import plan_cells, run_grid
from advbench.store import RunStore

GRID = {
    "samples": 40, "batch_size": 16, "seed": 3, "defenses": ["cnn"],
    "attacks": [
        {"name": "fgsm", "epsilons": [0.1, 0.2]},
        {"name": "pgd-l2", "epsilons": [1.0], "steps": 5},
        {"name": "deepfool-l2", "epsilons": [0.5, 1.0]},
    ],
}


def run(tmp_path, trained_zoo, digits, grid=GRID, store=None):
    grid = grid_from_dict(grid)
    store = store or RunStore.create(tmp_path, grid.fingerprint())
    run_grid(grid, digits, store, zoo_dir=trained_zoo)
    return store


def numbers(records: pd.DataFrame) -> pd.DataFrame:
    return records.drop(columns=["seconds"])


def test_records_hold_every_sample_and_epsilon(tmp_path, trained_zoo, digits):
    store = run(tmp_path, trained_zoo, digits)
    records = store.records()
    assert list(records.columns) == RECORD_COLUMNS
    counts = records.groupby("attack").size()
    assert counts["fgsm"] == 80 and counts["pgd-l2"] == 40 and counts["deepfool-l2"] == 40
    fgsm = records[records.attack == "fgsm"]
    assert (fgsm["linf"] <= fgsm["epsilon"] + 1e-5).all()
    assert records["sample"].nunique() == 40
    manifest = store.manifest()
    assert manifest.grid["seed"] == 3 and manifest.versions["torch"] == torch.__version__
    assert manifest.schema_version == SCHEMA_VERSION and manifest.versions["foolbox"]
    assert [c.id for c in manifest.cells] == ["cnn__fgsm", "cnn__pgd-l2", "cnn__deepfool-l2"]
    assert manifest.cells[2].kind is AttackKind.MINIMUM_NORM and manifest.cells[1].norm is Norm.L2
    assert manifest.defenses["cnn"].weights_sha256 and manifest.defenses["cnn"].checkpoint_sha256
    assert {c: r.rows for c, r in manifest.finished.items()} == {"cnn__fgsm": 80, "cnn__pgd-l2": 40,
                                                                 "cnn__deepfool-l2": 40}


def test_same_grid_and_seed_give_same_numbers(tmp_path, trained_zoo, digits):
    first = run(tmp_path / "a", trained_zoo, digits).records()
    second = run(tmp_path / "b", trained_zoo, digits).records()
    pd.testing.assert_frame_equal(numbers(first), numbers(second))


def test_resume_reruns_only_missing_cells_with_identical_numbers(tmp_path, trained_zoo, digits):
    store = run(tmp_path, trained_zoo, digits)
    before = store.records()
    kept = store.record_path("cnn__fgsm")
    kept_mtime = kept.stat().st_mtime_ns
    store.record_path("cnn__pgd-l2").unlink()  # as if interrupted during this cell
    run(tmp_path, trained_zoo, digits, store=store)
    assert kept.stat().st_mtime_ns == kept_mtime
    pd.testing.assert_frame_equal(numbers(before), numbers(store.records()))


class CheatingAttack(Attack):
    """Returns examples twice as far as allowed: the runner must refuse them."""

    norm = Norm.LINF

    def run(self, target, x, y, epsilon):
        return (x + 2 * epsilon).clamp(0, 1)


def test_out_of_ball_attack_fails_its_cell_and_keeps_earlier_cells(tmp_path, trained_zoo, digits, monkeypatch):
    grid = grid_from_dict({**GRID, "attacks": [{"name": "cheat", "epsilons": [0.1]}, {"name": "fgsm", "epsilons": [0.1]}]})
    with attacks.temporarily("cheat", CheatingAttack):
        store = RunStore.create(tmp_path, grid.fingerprint())
        manifest = run_grid(grid, digits, store, zoo_dir=trained_zoo)
        assert "left its linf ball" in manifest.refused["cnn__cheat"]
        assert "cnn__fgsm" in manifest.finished and "cnn__cheat" not in manifest.finished  # the grid went on
        with pytest.raises(AttackVerificationError, match="left its linf ball"):
            run_grid(grid, digits, RunStore.create(tmp_path, grid.fingerprint()), zoo_dir=trained_zoo, fail_fast=True)


def test_minimum_norm_summary_reads_accuracy_off_norms(tmp_path, trained_zoo, digits):
    store = run(tmp_path, trained_zoo, digits)
    records = store.records()
    summary = summarize(Run.open([store]))
    deepfool = summary[summary.attack == "deepfool-l2"].set_index("epsilon")
    assert list(deepfool.index) == [0.5, 1.0, float("inf")]
    assert deepfool["robust_accuracy"].is_monotonic_decreasing
    rows = records[records.attack == "deepfool-l2"]
    expected = ((rows.clean_pred == rows.label) & ~((rows.adv_pred != rows.label) & (rows.l2 <= 1.0 + 1e-5))).mean()
    assert deepfool.loc[1.0, "robust_accuracy"] == pytest.approx(expected)


@pytest.mark.parametrize("preset", sorted(p.name for p in preset_path("").iterdir() if p.suffix == ".toml"))
def test_every_shipped_preset_loads_and_plans(preset, digits):
    grid = load_grid(Path("presets") / preset)
    plans = plan_cells(grid, digits)
    assert len(plans) == sum(1 for d in grid.defenses for a in grid.attacks if a.applies_to(d))


class _MemoryHungryFGSM(Attack):
    """FGSM that runs out of (GPU) memory on batches larger than 8 inputs."""

    norm = Norm.LINF
    batches: list[int] = []

    def run(self, target, x, y, *, epsilon):
        if len(x) > 8:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        _MemoryHungryFGSM.batches.append(len(x))
        from advbench.attacks import make_attack

        return make_attack("fgsm").run(target, x, y, epsilon=epsilon)


def test_out_of_memory_batches_are_halved_with_a_warning(tmp_path, trained_zoo, digits):
    from advbench.progress import Observer

    messages = []

    class Recorder(Observer):
        def message(self, text: str) -> None:
            messages.append(text)

    hungry = _MemoryHungryFGSM
    hungry.batches.clear()
    with attacks.temporarily("hungry-fgsm", _MemoryHungryFGSM):
        grid = grid_from_dict({"samples": 30, "batch_size": 30, "seed": 0, "defenses": ["cnn"],
                               "attacks": [{"name": "hungry-fgsm", "epsilons": [0.1]},
                                           {"name": "fgsm", "epsilons": [0.1]}]})
        store = RunStore.create(tmp_path, grid.fingerprint())
        run_grid(grid, digits, store, zoo_dir=trained_zoo, observer=Recorder())
    records = store.records()
    assert sorted(hungry.batches) == [7, 7, 8, 8] and any("out of memory" in m for m in messages)
    hungry_rows = records[records.attack == "hungry-fgsm"].reset_index(drop=True)
    plain_rows = records[records.attack == "fgsm"].reset_index(drop=True)
    assert len(hungry_rows) == 30
    assert (hungry_rows["adv_pred"] == plain_rows["adv_pred"]).all()  # FGSM is deterministic per input
