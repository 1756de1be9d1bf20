"""`robustbench:MODEL` defenses, offline: a checkpoint placed where RobustBench looks for it."""

from __future__ import annotations

import importlib.util
import json
import pickle

import numpy as np
import pytest
import torch

from helpers import invoke

if importlib.util.find_spec("robustbench") is None:  # its own __init__ may not import: see robustbench_models
    pytest.skip("the robustbench extra is not installed", allow_module_level=True)

MODEL = "Ding2020MMA"  # the smallest CIFAR-10 Linf architecture of the leaderboard (WRN-28-4)



@pytest.fixture
def fake_cifar(tmp_path, monkeypatch):
    """A CIFAR-10 folder in torchvision's layout with a few random images (no download)."""
    import torchvision.datasets.cifar as cifar

    monkeypatch.setattr(cifar, "check_integrity", lambda path, md5=None: __import__("os").path.exists(path))
    folder = tmp_path / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, (6, 3072), dtype=np.uint8), "labels": list(rng.integers(0, 10, 6))}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [str(i) for i in range(10)]}))
    monkeypatch.setenv("ADVBENCH_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("ADVBENCH_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("ADVBENCH_ZOO", str(tmp_path / "zoo"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _place_checkpoint(model_dir):
    """Random weights of the right architecture, saved where RobustBench's loader looks."""
    from advbench.defenses.robustbench_models import _module

    zoo, enums = _module("model_zoo"), _module("model_zoo.enums")
    net = zoo.model_dicts[enums.BenchmarkDataset("cifar10")][enums.ThreatModel("Linf")][MODEL]["model"]()
    path = model_dir / "cifar10" / "Linf" / f"{MODEL}.pt"
    path.parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save({"state_dict": net.state_dict()}, path)
    return path


def test_a_robustbench_model_is_attacked_from_a_local_checkpoint(fake_cifar):
    path = _place_checkpoint(fake_cifar / "rb-models")
    result = invoke("attack", f"robustbench:{MODEL}", "--dataset", "cifar10", "--attack", "fgsm", "--eps", "8/255",
                    "--samples", "4", "--no-sanity", "--model-dir", fake_cifar / "rb-models", "--format", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["summary"]
    assert [r["defense"] for r in rows] == [f"robustbench:{MODEL}"] and rows[0]["samples"] == 4
    assert rows[0]["epsilon"] == pytest.approx(8 / 255)
    from advbench.store import list_runs

    (run,) = list_runs(fake_cifar / "results")
    manifest = run.manifest()
    info = manifest.defenses[f"robustbench:{MODEL}"]
    assert info.spec == f"robustbench:{MODEL}:Linf"  # the threat model came from the attack's norm
    from advbench.store import sha256_file

    assert info.checkpoint_sha256 == sha256_file(path)
    assert manifest.grid["subset"] == "first"  # RobustBench's convention off digits
    assert sorted(run.records()["sample"]) == [0, 1, 2, 3]


def test_a_missing_robustbench_checkpoint_names_the_expected_path(fake_cifar):
    result = invoke("attack", f"robustbench:{MODEL}", "--dataset", "cifar10", "--attack", "fgsm", "--eps", "8/255",
                    "--samples", "4", "--model-dir", fake_cifar / "nowhere")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert str(fake_cifar / "nowhere" / "cifar10" / "Linf" / f"{MODEL}.pt") in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (fake_cifar / "results").exists()  # refused before anything was written


def test_an_unknown_robustbench_name_or_dataset_is_one_line(fake_cifar):
    unknown = invoke("attack", "robustbench:NoSuchModel2099", "--dataset", "cifar10", "--attack", "fgsm", "--samples", "4")
    assert unknown.exit_code == 2 and "no cifar10 Linf model 'NoSuchModel2099'" in unknown.output
    digits = invoke("attack", f"robustbench:{MODEL}", "--attack", "fgsm")
    assert digits.exit_code == 2 and "RobustBench models are for cifar10" in digits.output


class _RunsCode:
    """Unpickling this creates the directory it names: proof that code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (__import__("os").makedirs, (self.marker,))


def test_a_robustbench_checkpoint_holding_pickled_code_is_refused_unrun(fake_cifar):
    path = _place_checkpoint(fake_cifar / "rb-models")
    state = torch.load(path, weights_only=True)["state_dict"]
    marker = fake_cifar / "code-ran"
    torch.save({"state_dict": state, "payload": _RunsCode(str(marker))}, path)
    result = invoke("attack", f"robustbench:{MODEL}", "--dataset", "cifar10", "--attack", "fgsm", "--eps", "8/255",
                    "--samples", "4", "--no-sanity", "--model-dir", fake_cifar / "rb-models", "--format", "csv")
    assert not marker.exists()
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "never unpickles" in result.output and str(path) in result.output
