"""Regression tests for issue 12's integrity findings: a table must never silently lose,
mix or invent records. Each test replays one reproduced failure through the CLI."""

from __future__ import annotations

import json
import shutil
import threading

import pandas as pd
import pytest
import torch
from torch import nn

from advbench.attacks.base import FixedEpsilonAttack
from advbench.norms import Norm
from advbench.registry import attacks
from advbench.store import RunStore, list_runs
from helpers import invoke



def only_run(isolated) -> RunStore:
    (path,) = [p for p in (isolated / "results").iterdir() if p.is_dir()]
    return RunStore(path)


def summary_rows(result) -> pd.DataFrame:
    return pd.DataFrame(json.loads(result.stdout)["summary"])


@pytest.fixture
def own_zoo(isolated, trained_zoo, monkeypatch):
    """A private copy of the tiny zoo that a test may damage or retrain."""
    directory = isolated / "zoo"
    shutil.copytree(trained_zoo, directory)
    monkeypatch.setenv("ADVBENCH_ZOO", str(directory))
    return directory


# ----------------------------------------------------------------------------- 1. colliding cell files

@pytest.mark.parametrize("labels", [("PGD-α", "PGD-β"), ("net a", "net/a")])
def test_labels_that_sanitise_alike_keep_their_own_cells(isolated, labels):
    grid = isolated / "grid.toml"
    if labels[0].startswith("PGD"):
        body = "".join(f'[[attacks]]\nname = "fgsm"\nlabel = "{label}"\nepsilons = [{eps}]\n'
                       for label, eps in zip(labels, (0.05, 0.3)))
        grid.write_text('samples = 30\ndefenses = ["cnn"]\n' + body)
    else:
        grid.write_text(f'samples = 30\ndefenses = [{{name = "cnn", label = "{labels[0]}"}}, '
                        f'{{name = "cnn", label = "{labels[1]}"}}]\n[[attacks]]\nname = "fgsm"\nepsilons = [0.1]\n')
    result = invoke("run", grid, "--format", "json")
    assert result.exit_code == 0, result.output
    rows = summary_rows(result)
    column = "attack" if labels[0].startswith("PGD") else "defense"
    assert set(rows[column]) >= set(labels)
    assert (rows["samples"] == 30).all()  # not 60 for one and nothing for the other
    assert invoke("report", "--format", "csv").exit_code == 0


# ----------------------------------------------------------------------------- 2. damaged record files

def _fgsm_file(store: RunStore):
    for path in (store.path / "records").glob("*.csv"):
        if "fgsm" in path.name:
            return path
    raise AssertionError("no fgsm records file")


@pytest.mark.parametrize("damage", ["truncate", "garble", "drop-rows"])
def test_damaged_records_are_named_and_rerun_on_resume(isolated, damage):
    grid = isolated / "grid.toml"
    grid.write_text('samples = 60\ndefenses = ["cnn"]\n[[attacks]]\nname = "fgsm"\nepsilons = [0.1]\n'
                    '[[attacks]]\nname = "pgd-linf"\nepsilons = [0.1]\nsteps = 3\n')
    first = invoke("run", grid, "--format", "json")
    assert first.exit_code == 0, first.output
    store = only_run(isolated)
    path = _fgsm_file(store)
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    damaged = {"truncate": text[: len(text) // 2], "garble": text.replace(",", ";", 40),
               "drop-rows": "".join(lines[:21])}[damage]
    path.write_text(damaged)
    report = invoke("report", "--format", "csv")
    assert report.exit_code == 2
    assert "cnn__fgsm" in report.output and "Traceback" not in report.output
    assert len(report.output.strip().splitlines()) == 1
    again = invoke("run", grid, "--format", "json", "--resume")
    assert again.exit_code == 0, again.output
    assert "cnn__fgsm" in again.stderr and "run again" in again.stderr
    pd.testing.assert_frame_equal(summary_rows(first).drop(columns=["seconds_per_sample", "samples_per_second"]),
                                  summary_rows(again).drop(columns=["seconds_per_sample", "samples_per_second"]))


def test_records_swapped_between_cells_are_refused(isolated):
    grid = isolated / "grid.toml"
    grid.write_text('samples = 20\ndefenses = ["cnn"]\n[[attacks]]\nname = "fgsm"\nepsilons = [0.1]\n'
                    '[[attacks]]\nname = "pgd-linf"\nepsilons = [0.1]\nsteps = 3\n')
    assert invoke("run", grid, "--format", "csv").exit_code == 0
    store = only_run(isolated)
    fgsm, pgd = store.record_path("cnn__fgsm"), store.record_path("cnn__pgd-linf")
    fgsm_text, pgd_text = fgsm.read_text(), pgd.read_text()
    fgsm.write_text(pgd_text)
    pgd.write_text(fgsm_text)
    report = invoke("report")
    assert report.exit_code == 2 and "checksum mismatch" in report.output


# ----------------------------------------------------------------------------- 3. attacks are isolated

class InPlaceAttack(FixedEpsilonAttack):
    """Moves x in place by 2 eps and returns it: the ball check must see the real distance."""

    norm = Norm.LINF

    def run(self, target, x, y, *, epsilon):
        x.add_(2 * epsilon).clamp_(0, 1)
        return x


class LabelWriter(FixedEpsilonAttack):
    """Overwrites the labels it was given; the records must keep the true labels."""

    norm = Norm.LINF

    def run(self, target, x, y, *, epsilon):
        y.fill_(0)
        return x.clone()


class TrainModeLeaver(FixedEpsilonAttack):
    """Leaves the defense in training mode (dropout on): the cell fails, the next is unaffected."""

    norm = Norm.LINF

    def run(self, target, x, y, *, epsilon):
        target.decision_model.train()
        return x.clone()


class WeightChanger(FixedEpsilonAttack):
    norm = Norm.LINF

    def run(self, target, x, y, *, epsilon):
        with torch.no_grad():
            next(target.decision_model.parameters()).mul_(0)
        return x.clone()


def _grid_with(isolated, attack: str, samples: int = 30):
    grid = isolated / "grid.toml"
    grid.write_text(f'samples = {samples}\nsanity = false\ndefenses = ["cnn"]\n[[attacks]]\nname = "{attack}"\nepsilons = [0.1]\n'
                    '[[attacks]]\nname = "fgsm"\nepsilons = [0.1]\n')
    return grid


def test_attack_changing_inputs_in_place_fails_the_ball_check(isolated):
    with attacks.temporarily("in-place", InPlaceAttack):
        result = invoke("run", _grid_with(isolated, "in-place"), "--format", "json")
    assert result.exit_code == 2 and "left its linf ball" in result.output
    rows = summary_rows(result)
    assert list(rows["attack"].unique()) == ["fgsm"]  # the grid went on


def test_attack_writing_labels_cannot_rewrite_them(isolated, digits):
    with attacks.temporarily("label-writer", LabelWriter):
        result = invoke("run", _grid_with(isolated, "label-writer"), "--format", "json")
    assert result.exit_code == 0, result.output
    records = only_run(isolated).records()
    _, _, labels = digits.test_subset(30, 0)
    for _, cell in records.groupby("attack"):
        assert cell["label"].tolist() == labels.tolist()


@pytest.mark.parametrize("attack_class,message", [(TrainModeLeaver, "training mode"),
                                                   (WeightChanger, "changed the defense's weights")])
def test_attack_changing_the_defense_fails_its_cell_only(isolated, attack_class, message):
    reference = invoke("attack", "cnn", "--attack", "fgsm", "--eps", "0.1", "--samples", "30", "--format", "json")
    with attacks.temporarily("meddler", attack_class):
        result = invoke("run", _grid_with(isolated, "meddler"), "--format", "json")
    assert result.exit_code == 2 and message in result.output
    fgsm = summary_rows(result).set_index("attack").loc["fgsm"]
    expected = summary_rows(reference).set_index("attack").loc["fgsm"]
    assert fgsm["clean_accuracy"] == expected["clean_accuracy"]
    assert fgsm["robust_accuracy"] == expected["robust_accuracy"]


# ----------------------------------------------------------------------------- 4. resume after retraining

class InterruptOnce(FixedEpsilonAttack):
    norm = Norm.LINF
    armed = True

    def run(self, target, x, y, *, epsilon):
        if InterruptOnce.armed:
            raise KeyboardInterrupt
        return x.clone()


def test_resume_after_retraining_reruns_the_old_models_cells(isolated, own_zoo):
    grid = isolated / "grid.toml"
    grid.write_text('samples = 30\ndefenses = ["cnn"]\n[[attacks]]\nname = "fgsm"\nepsilons = [0.1]\n'
                    '[[attacks]]\nname = "stop"\nepsilons = [0.1]\n')
    InterruptOnce.armed = True
    with attacks.temporarily("stop", InterruptOnce):
        assert invoke("run", grid).exit_code == 130
        store = only_run(isolated)
        old_digest = store.manifest().defenses["cnn"].weights_sha256
        retrain = invoke("train", "cnn", "--epochs", "1", "--seed", "5", "--force")
        assert retrain.exit_code == 0, retrain.output
        InterruptOnce.armed = False
        again = invoke("run", grid, "--resume", "--format", "json")
    assert again.exit_code == 0, again.output
    assert "weights of cnn changed" in again.stderr
    manifest = store.manifest()
    assert manifest.defenses["cnn"].weights_sha256 != old_digest
    records = store.records()
    clean = records.groupby("attack")["clean_pred"].apply(list)
    assert clean["fgsm"] == clean["stop"]  # both columns come from the retrained model


# ----------------------------------------------------------------------------- 5. the zoo checks names

def test_checkpoint_copied_over_another_entry_is_refused(isolated, own_zoo):
    assert invoke("train", "cnn", "--epochs", "1", "--name", "other-cnn").exit_code == 0
    shutil.copy(own_zoo / "other-cnn.pt", own_zoo / "cnn-digits.pt")
    result = invoke("attack", "cnn", "--attack", "fgsm", "--eps", "0.1", "--samples", "10")
    assert result.exit_code == 2 and "holds zoo entry 'other-cnn'" in result.output
    assert not (isolated / "results").exists() or not list_runs(isolated / "results")
    listing = invoke("zoo", "list")
    assert "cnn-digits" in listing.output and "UNVERIFIED" in listing.output


def test_edited_card_is_refused_and_not_listed_as_fact(isolated, own_zoo):
    card_path = own_zoo / "cnn-digits.json"
    card = json.loads(card_path.read_text())
    card["clean_accuracy"] = 0.999
    card_path.write_text(json.dumps(card))
    listing = invoke("zoo", "list")
    assert "99.9%" not in listing.output and "UNVERIFIED" in listing.output
    result = invoke("attack", "cnn", "--attack", "fgsm", "--eps", "0.1", "--samples", "10")
    assert result.exit_code == 2 and "clean_accuracy" in result.output


def test_replaced_weights_do_not_match_the_card(isolated, own_zoo):
    import io

    blob = torch.load(own_zoo / "cnn-digits.pt", weights_only=True)
    blob["state_dict"] = {k: torch.zeros_like(v) for k, v in blob["state_dict"].items()}
    buffer = io.BytesIO()
    torch.save(blob, buffer)
    (own_zoo / "cnn-digits.pt").write_bytes(buffer.getvalue())
    result = invoke("attack", "cnn", "--attack", "fgsm", "--eps", "0.1", "--samples", "10")
    assert result.exit_code == 2 and "sha256 differs" in result.output


# ----------------------------------------------------------------------------- 6. bad values

@pytest.mark.parametrize("args,message", [
    (["attack", "cnn", "--attack", "pgd-linf", "--eps", "0.1", "--step-size", "-1"], "step-size=-1.0 is out of range"),
    (["attack", "cnn", "--attack", "pgd-linf", "--eps", "0.1", "--steps", "0"], "steps=0 is out of range"),
    (["attack", "cnn", "--attack", "pgd-linf", "--eps", "0.1", "--opt", "rel_step_size=nan"], "NaN"),
    (["train", "cnn", "--lr", "inf", "--name", "nan-cnn"], "not a finite number"),
    (["attack", "cnn", "--attack", "fgsm", "--samples", "100000"], "has only 360 test samples"),
])
def test_bad_values_are_refused_before_anything_runs(isolated, own_zoo, args, message):
    result = invoke(*args)
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (own_zoo / "nan-cnn.pt").exists()
    assert not (isolated / "results").exists() or not list_runs(isolated / "results")


def test_grid_training_options_are_range_checked(isolated, own_zoo):
    grid = isolated / "grid.toml"
    grid.write_text('samples = 10\ndefenses = [{name = "cnn", train = {epochs = 0}}]\n'
                    '[[attacks]]\nname = "fgsm"\nepsilons = [0.1]\n')
    result = invoke("run", grid)
    assert result.exit_code == 2 and "epochs=0 is out of range" in result.output
    assert not list(own_zoo.glob("cnn-digits-epochs=0*"))


def test_diverging_training_writes_nothing(isolated, own_zoo):
    result = invoke("train", "cnn", "--lr", "1e30", "--epochs", "1", "--name", "diverged")
    assert result.exit_code == 2 and "diverged" in result.output
    assert not (own_zoo / "diverged.pt").exists()


class NaNNet(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.linear = nn.Linear(64, num_classes)

    def forward(self, x):
        return self.linear(x.flatten(1)) * float("nan")


def test_non_finite_logits_stop_that_defense_with_a_clear_error(isolated, monkeypatch):
    import sys
    import types

    module = types.ModuleType("nan_models")
    module.NaNNet = NaNNet
    monkeypatch.setitem(sys.modules, "nan_models", module)
    result = invoke("run", "--defense", "python:nan_models:NaNNet", "--defense", "cnn", "--samples", "20",
                    "--workers", "1", "--format", "json")
    assert result.exit_code == 2 and "non-finite logits" in result.output
    rows = summary_rows(result)
    assert set(rows["defense"]) == {"cnn"}  # the other defense still ran
    assert "INCOMPLETE" in result.stderr


# ----------------------------------------------------------------------------- 7. failed runs are marked

def test_unknown_defense_leaves_no_run_and_latest_stays(isolated):
    good = invoke("attack", "cnn", "--attack", "fgsm", "--eps", "0.1", "--samples", "10")
    assert good.exit_code == 0
    for spec in ("nosuchdefense", "cnn:nomode", "cnn@x", "pgd-at-digits-missing"):
        bad = invoke("attack", spec, "--attack", "fgsm", "--eps", "0.1", "--samples", "10")
        assert bad.exit_code == 2 and len(bad.output.strip().splitlines()) == 1, bad.output
    assert len(list_runs(isolated / "results")) == 1
    assert invoke("report").exit_code == 0


def test_corrupt_manifest_affects_only_its_own_run(isolated):
    assert invoke("attack", "cnn", "--attack", "fgsm", "--eps", "0.1", "--samples", "10").exit_code == 0
    broken = isolated / "results" / "00000000-broken"
    (broken / "records").mkdir(parents=True)
    (broken / "manifest.json").write_text("{not json")
    assert invoke("report").exit_code == 0
    again = invoke("attack", "cnn", "--attack", "fgsm", "--eps", "0.1", "--samples", "10", "--resume")
    assert again.exit_code == 0, again.output
    named = invoke("report", "00000000-broken")
    assert named.exit_code == 2 and "manifest" in named.output


def test_runs_started_at_once_get_their_own_directories(tmp_path):
    made, errors = [], []

    def create():
        try:
            made.append(RunStore.create(tmp_path, "abcdef123").path)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(set(made)) == 8


def test_a_second_process_cannot_run_the_same_run(tmp_path, trained_zoo, digits):
    import os

    from advbench.config import grid_from_dict
    from advbench.errors import AdvbenchError
    from advbench.run import run_grid

    grid = grid_from_dict({"samples": 10, "defenses": ["cnn"], "attacks": [{"name": "fgsm", "epsilons": [0.1]}]})
    store = RunStore.create(tmp_path, grid.fingerprint())
    with RunStore(store.path).lock():  # held (the kernel's flock) while run_grid tries to take it
        with pytest.raises(AdvbenchError, match=f"is being run by process {os.getpid()}"):
            run_grid(grid, digits, store, zoo_dir=trained_zoo)
    (store.path / "run.lock").write_text("999999999")  # a dead process's lock file is taken over
    manifest = run_grid(grid, digits, store, zoo_dir=trained_zoo)
    assert "cnn__fgsm" in manifest.finished and not (store.path / "run.lock").exists()


def test_failed_cell_is_recorded_grid_goes_on_and_report_says_incomplete(isolated):
    with attacks.temporarily("in-place", InPlaceAttack):
        result = invoke("run", _grid_with(isolated, "in-place"), "--format", "table")
        assert result.exit_code == 2
        store = only_run(isolated)
        manifest = store.manifest()
        assert "cnn__in-place" in manifest.refused and "cnn__fgsm" in manifest.finished
        assert "INCOMPLETE" in result.stdout and "1 of 2 cells" in result.stdout
        report = invoke("report")
        assert "1 of 2 cells" in report.output
        assert invoke("run", _grid_with(isolated, "in-place"), "--fail-fast", "--fresh").exit_code == 2
    runs = list_runs(isolated / "results")
    assert len(runs) == 2 and "cnn__fgsm" not in runs[-1].manifest().finished  # stopped at the first cell


def test_plugin_calling_sys_exit_at_import_is_listed_as_broken(tmp_path, monkeypatch):
    (tmp_path / "exiting_plugin.py").write_text("import sys\nsys.exit(3)\n")
    (tmp_path / "not_a_class_plugin.py").write_text("thing = 42\n")
    dist = tmp_path / "exiting_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: exiting-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[advbench.attacks]\nexits = exiting_plugin:Anything\n"
                                           "notaclass = not_a_class_plugin:thing\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    attacks.refresh()
    try:
        result = invoke("list", "attacks")
        assert result.exit_code == 0, result.output
        assert "exits" in result.output and "BROKEN (SystemExit: 3)" in result.output
        assert "notaclass" in result.output and "not a subclass of Attack" in result.output
        assert "pgd-linf" in result.output
    finally:
        monkeypatch.undo()
        attacks.refresh()


def test_a_module_only_this_process_has_is_refused_before_worker_processes_start(isolated, monkeypatch):
    """Spawned workers cannot import a module that exists only in sys.modules: every cell of it
    used to fail with 'No module named', after a run directory had been written."""
    import sys
    import types

    module = types.ModuleType("nan_models")
    module.NaNNet = NaNNet
    monkeypatch.setitem(sys.modules, "nan_models", module)
    result = invoke("run", "--defense", "python:nan_models:NaNNet", "--samples", "20", "--workers", "2")
    assert result.exit_code == 2 and "--workers 1" in result.output
    assert "Traceback" not in result.output
    assert not (isolated / "results").exists() or not any((isolated / "results").iterdir())
