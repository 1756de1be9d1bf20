"""`advbench show` draws a saved adversarials file only when it agrees with the cell's records."""

from __future__ import annotations

import io
import json

import pytest
import torch

from advbench.store import RunStore, sha256_bytes, list_runs
from helpers import invoke, one_line_error


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory, trained_zoo):
    """A run of cnn x pgd-linf at two epsilons that kept its adversarial inputs (copied per test)."""
    directory = tmp_path_factory.mktemp("saved")
    grid = directory / "grid.toml"
    grid.write_text('samples = 12\nsanity = false\nsave_adversarials = true\ndefenses = ["cnn"]\n'
                    '[[attacks]]\nname = "pgd-linf"\nepsilons = [0.05, 0.2]\nsteps = 3\n')
    result = invoke("run", grid, "--format", "csv", "--results-dir", directory / "results",
                    "--zoo-dir", trained_zoo)
    assert result.exit_code == 0, result.output
    return list_runs(directory / "results")[0]


@pytest.fixture
def run_copy(saved_run, isolated):
    import shutil

    target = isolated / "results" / saved_run.run_id
    shutil.copytree(saved_run.path, target)
    return RunStore(target)


def _rewrite(store: RunStore, change) -> None:
    """Replace the cell's saved file by `change(saved)` and update the manifest to match (an edit)."""
    path = store.adversarials_path("cnn__pgd-linf")
    saved = torch.load(path, weights_only=True)
    buffer = io.BytesIO()
    torch.save(change(saved), buffer)
    path.write_bytes(buffer.getvalue())
    manifest = json.loads((store.path / "manifest.json").read_text())
    manifest["adversarials"]["cnn__pgd-linf"] = sha256_bytes(buffer.getvalue())
    (store.path / "manifest.json").write_text(json.dumps(manifest))


def _nan(saved):
    saved["adversarials"][0, 0, 0, 0, 0] = float("nan")
    return saved


def _outside_ball(saved):
    saved["adversarials"][0] = (saved["adversarials"][0] + 0.1).clamp(0, 1)
    return saved


CHANGES = {
    "truncated": (lambda s: {**s, "adversarials": s["adversarials"][:, :5]}, "shape"),
    "reshaped": (lambda s: {**s, "adversarials": s["adversarials"].reshape(2, 12, 64)}, "shape"),
    "wrong ids": (lambda s: {**s, "samples": s["samples"].flip(0)}, "sample ids"),
    "not a dict": (lambda s: [s["adversarials"]], "not a dict"),
    "wrong epsilons": (lambda s: {**s, "epsilons": torch.tensor([0.05, 0.3])}, "epsilons"),
    "nan": (_nan, "non-finite"),
    "outside the ball": (_outside_ball, "ball"),
}


@pytest.mark.parametrize("name", list(CHANGES))
def test_show_refuses_a_file_that_disagrees_with_its_records(run_copy, isolated, name):
    change, expected = CHANGES[name]
    _rewrite(run_copy, change)
    line = one_line_error(invoke("show", "--out", isolated / "picture.png"))
    assert expected in line and "cnn__pgd-linf" in line
    assert not (isolated / "picture.png").exists()


def test_show_draws_an_untouched_file(run_copy, isolated):
    result = invoke("show", "--out", isolated / "picture.png")
    assert result.exit_code == 0, result.output
    assert (isolated / "picture.png").stat().st_size > 0


def test_show_out_must_name_a_file(run_copy, isolated):
    (isolated / "pictures").mkdir()
    line = one_line_error(invoke("show", "--out", isolated / "pictures"))
    assert "is a directory" in line
    assert list((isolated / "pictures").iterdir()) == [] and not list(isolated.glob(".pictures*"))
