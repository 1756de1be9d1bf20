"""What reuse trusts: changed code is never reused, and a damaged earlier run never breaks a new one."""

from __future__ import annotations

import importlib
import io
import json
import os
import sys

import pytest
import torch

from advbench.provenance import plugin_code
from advbench.registry import attacks, datasets
from advbench.store import RunStore, sha256_bytes, list_runs
from helpers import invoke

PLUGIN = '''
from advbench import FixedEpsilonAttack, Norm


class Shift(FixedEpsilonAttack):
    """Moves every pixel by SIGN * epsilon."""

    norm = Norm.LINF
    gradient_based = False

    def run(self, target, x, y, *, epsilon):
        return (x + SIGN * epsilon).clamp(0, 1)


SIGN = {sign}
'''


def _load_plugin(directory, sign: int):
    (directory / "shift_plugin.py").write_text(PLUGIN.format(sign=sign))
    sys.modules.pop("shift_plugin", None)
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))
    importlib.invalidate_caches()
    return importlib.import_module("shift_plugin").Shift


def _grid(path, attacks_text: str) -> None:
    path.write_text('samples = 30\nsanity = false\ndefenses = ["cnn"]\n' + attacks_text)


SHIFT = '[[attacks]]\nname = "shift"\nepsilons = [0.3]\n'
FGSM = '[[attacks]]\nname = "fgsm"\nepsilons = [0.1]\n'


def _latest(results) -> RunStore:
    return list_runs(results)[-1]


def test_a_changed_plugin_attack_is_computed_again_not_reused(isolated):
    _grid(isolated / "one.toml", SHIFT)
    _grid(isolated / "two.toml", SHIFT + FGSM)
    with attacks.temporarily("shift", _load_plugin(isolated, +1)):
        assert invoke("run", isolated / "one.toml", "--format", "csv").exit_code == 0
    with attacks.temporarily("shift", _load_plugin(isolated, -1)):  # same name and version, other code
        grown = invoke("run", isolated / "two.toml", "--format", "csv")
    assert grown.exit_code == 0, grown.output
    manifest = _latest(isolated / "results").manifest()
    assert "cnn__shift" not in manifest.reused
    with attacks.temporarily("shift", _load_plugin(isolated, -1)):  # unchanged code: reused
        again = invoke("run", isolated / "two.toml", "--format", "csv")
    assert again.exit_code == 0, again.output
    assert set(_latest(isolated / "results").manifest().reused) == {"cnn__shift", "cnn__fgsm"}


FACTORY = '''
from pathlib import Path

from advbench import zoo
from advbench.data import load_dataset


def net():
    model = zoo.load("cnn-digits", "{zoo}", info=load_dataset("digits").info)[0]
    model.forward_scale = {scale}
    original = model.forward
    model.forward = lambda x: original(x) * model.forward_scale
    return model
'''


def test_a_python_model_whose_code_changed_but_not_its_weights_is_computed_again(isolated, trained_zoo):
    def write(scale: float) -> None:
        (isolated / "scaled_model.py").write_text(FACTORY.format(zoo=trained_zoo, scale=scale))
        sys.modules.pop("scaled_model", None)
        importlib.invalidate_caches()

    grid = isolated / "grid.toml"
    grid.write_text('samples = 30\nsanity = false\ndefenses = ["python:scaled_model:net"]\n' + FGSM)
    write(1.0)
    assert invoke("run", grid, "--format", "csv").exit_code == 0
    write(-1.0)  # the same weights, predictions reversed
    again = invoke("run", grid, "--format", "csv")
    assert again.exit_code == 0, again.output
    assert not _latest(isolated / "results").manifest().reused


def test_plugin_code_covers_a_dataset_plugin_edited_in_place(tmp_path):
    module = tmp_path / "my_data_plugin.py"
    module.write_text("def load(root=None, download=False):\n    return None\n")
    sys.path.insert(0, str(tmp_path))
    try:
        loader = importlib.import_module("my_data_plugin").load
        with datasets.temporarily("my-data", loader):
            before = plugin_code(datasets, "my-data")
            module.write_text("def load(root=None, download=False):\n    return 1\n")
            after = plugin_code(datasets, "my-data")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("my_data_plugin", None)
    assert before["origin"] == "temporary" and before["source"] != after["source"]
    assert plugin_code(datasets, "digits") is None  # built-ins: covered by advbench's own source hash


def test_reuse_false_in_a_grid_computes_everything(isolated):
    _grid(isolated / "one.toml", FGSM)
    assert invoke("run", isolated / "one.toml", "--format", "csv").exit_code == 0
    (isolated / "two.toml").write_text((isolated / "one.toml").read_text().replace("sanity = false\n",
                                                                                   "sanity = false\nreuse = false\n"))
    assert invoke("run", isolated / "two.toml", "--format", "csv").exit_code == 0
    assert not _latest(isolated / "results").manifest().reused


# ----------------------------------------------------------------------------- damaged earlier runs

class _RunsCode:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def _saved_run(isolated) -> RunStore:
    text = 'samples = 30\nsanity = false\nsave_adversarials = true\ndefenses = ["cnn"]\n' + FGSM
    (isolated / "one.toml").write_text(text)
    (isolated / "two.toml").write_text(text + '[[attacks]]\nname = "pgd-linf"\nepsilons = [0.1]\nsteps = 3\n')
    first = invoke("run", isolated / "one.toml", "--format", "csv")
    assert first.exit_code == 0, first.output
    return _latest(isolated / "results")


def _replace_adversarials(store: RunStore, data: bytes, update_checksum: bool) -> None:
    path = store.adversarials_path("cnn__fgsm")
    path.write_bytes(data)
    if update_checksum:  # a deliberate edit: the manifest agrees with the new file
        manifest = json.loads((store.path / "manifest.json").read_text())
        manifest["adversarials"]["cnn__fgsm"] = sha256_bytes(data)
        (store.path / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("damage", ["bytes", "pickled-code", "reshaped"])
def test_a_damaged_earlier_adversarials_file_is_recomputed_with_a_warning(isolated, tmp_path, damage):
    earlier = _saved_run(isolated)
    path = earlier.adversarials_path("cnn__fgsm")
    marker = tmp_path / "code-ran"
    if damage == "bytes":
        _replace_adversarials(earlier, path.read_bytes()[:-40], update_checksum=False)
    else:
        saved = torch.load(path, weights_only=True)
        if damage == "pickled-code":
            saved["adversarials"] = _RunsCode(str(marker))
        else:
            saved["adversarials"] = saved["adversarials"][:, :10]
        buffer = io.BytesIO()
        torch.save(saved, buffer)
        _replace_adversarials(earlier, buffer.getvalue(), update_checksum=True)
    grown = invoke("run", isolated / "two.toml", "--format", "csv")
    assert grown.exit_code == 0, grown.output
    assert not marker.exists()
    warnings = [line for line in grown.stderr.splitlines() if f"earlier run {earlier.run_id}" in line]
    assert len(warnings) == 1 and "computed again" in warnings[0], grown.stderr
    latest = _latest(isolated / "results")
    manifest = latest.manifest()
    assert latest.path != earlier.path and "cnn__fgsm" in manifest.finished and "cnn__fgsm" not in manifest.reused
    saved = latest.read_adversarials("cnn__fgsm", manifest.adversarials["cnn__fgsm"])
    assert saved["adversarials"].shape == (1, 30, 1, 8, 8)


def test_a_plugin_defense_edited_in_place_changes_its_content_key(tmp_path):
    from advbench.registry import defenses
    from advbench.reuse import defense_code

    module = tmp_path / "my_defense_plugin.py"
    module.write_text("from advbench import Defense\n\n\nclass Mine(Defense):\n    def forward(self, x):\n"
                      "        return x.flatten(1)[:, :10]\n")
    sys.path.insert(0, str(tmp_path))
    try:
        cls = importlib.import_module("my_defense_plugin").Mine
        with defenses.temporarily("mine", cls):
            before = defense_code("mine", cls())
            module.write_text(module.read_text().replace(":10]", ":10] * 2"))
            after = defense_code("mine", cls())
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("my_defense_plugin", None)
    assert before["plugin"]["origin"] == "temporary" and before != after
