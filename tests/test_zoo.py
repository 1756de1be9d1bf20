"""Training and the zoo round trip, card contents, and clear errors for bad checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from advbench import defense_loading, zoo
from advbench.data import DataInfo, Dataset
from advbench.defenses.training import accuracy
from advbench.errors import AdvbenchError


def test_train_writes_checkpoint_and_card(trained_zoo, digits):
    card = json.loads((trained_zoo / "cnn-digits.json").read_text())
    for key in ("defense", "dataset", "norm", "eps", "hyperparameters", "seed", "clean_accuracy", "train_seconds",
                "seconds_per_epoch", "advbench_version", "torch_version"):
        assert key in card
    assert card["hyperparameters"]["epochs"] == 4 and card["defense"] == "cnn"
    model, loaded = zoo.load("cnn-digits", trained_zoo, info=digits.info)
    assert loaded.clean_accuracy == card["clean_accuracy"]
    assert accuracy(model, digits.test_x, digits.test_y) == pytest.approx(card["clean_accuracy"])
    assert card["clean_accuracy"] > 0.8


def test_training_is_seeded(tmp_path, digits):
    a = zoo.train("cnn", digits, options={"epochs": 1}, zoo_dir=tmp_path, name="a")
    b = zoo.train("cnn", digits, options={"epochs": 1}, zoo_dir=tmp_path, name="b")
    assert a.clean_accuracy == b.clean_accuracy
    sa = torch.load(tmp_path / "a.pt", weights_only=True)["state_dict"]
    sb = torch.load(tmp_path / "b.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_checkpoint_for_other_inputs_is_refused(trained_zoo):
    other = DataInfo("mnist", (1, 28, 28), 10)
    with pytest.raises(AdvbenchError, match="trained on digits"):
        zoo.load("cnn-digits", trained_zoo, info=other)


def test_corrupt_and_missing_checkpoints(tmp_path):
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(AdvbenchError, match="corrupt"):
        zoo.load("broken", tmp_path)
    with pytest.raises(AdvbenchError, match="does not exist"):
        zoo.load("absent", tmp_path)


def test_missing_checkpoint_off_digits_names_the_train_command(tmp_path):
    fake = Dataset(DataInfo("mnist", (1, 28, 28), 10), *(torch.zeros(1),) * 4)
    with pytest.raises(AdvbenchError, match="advbench train cnn --dataset mnist"):
        defense_loading.resolve_defense("cnn", fake, zoo_dir=tmp_path)


def test_missing_digits_checkpoint_is_trained_on_demand(tmp_path, digits):
    messages = []

    class Recorder(zoo.Observer):
        def message(self, text):
            messages.append(text)

    with pytest.raises(AdvbenchError, match="train it first"):  # resolving never trains as a side effect
        defense_loading.resolve_defense("cnn", digits, zoo_dir=tmp_path)
    assert not (tmp_path / "cnn-digits.pt").exists()
    model = defense_loading.resolve_defense("cnn", digits, zoo_dir=tmp_path, observer=Recorder(), train_if_missing=True)
    assert (tmp_path / "cnn-digits.pt").exists() and (tmp_path / "cnn-digits.json").exists()
    assert any("training cnn" in m for m in messages)
    assert model(digits.test_x[:2]).shape == (2, 10)


def test_python_factory_defense_with_weights(tmp_path, digits, monkeypatch):
    (tmp_path / "my_models.py").write_text(
        "import torch\n"
        "def make(num_classes):\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, num_classes))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    reference = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    torch.save(reference.state_dict(), tmp_path / "w.pt")
    model = defense_loading.resolve_defense("python:my_models:make", digits, weights=tmp_path / "w.pt")
    x = digits.test_x[:4]
    assert torch.allclose(model(x), reference(x))
    with pytest.raises(AdvbenchError, match="must look like"):
        defense_loading.resolve_defense("python:my_models", digits)
    torch.save({"other": torch.zeros(3)}, tmp_path / "bad.pt")
    with pytest.raises(AdvbenchError, match="do not fit"):
        defense_loading.resolve_defense("python:my_models:make", digits, weights=tmp_path / "bad.pt")


@pytest.mark.gpu
def test_gpu_saved_checkpoint_loads_on_cpu(tmp_path, digits):
    zoo.train("cnn", digits, options={"epochs": 1}, zoo_dir=tmp_path, device=torch.device("cuda"))
    blob = torch.load(tmp_path / "cnn-digits.pt", weights_only=True, map_location="cpu")
    model, _ = zoo.load("cnn-digits", tmp_path, info=digits.info)
    assert next(model.parameters()).device.type == "cpu"
    assert blob["card"]["dataset"] == "digits"


def test_registered_trainable_defense_with_a_weights_file(tmp_path, digits, trained_zoo):
    """`advbench attack cnn --weights FILE`: the default architecture with those weights, no zoo entry."""
    state = torch.load(trained_zoo / "cnn-digits.pt", weights_only=True)["state_dict"]
    torch.save(state, tmp_path / "w.pt")
    model = defense_loading.resolve_defense("cnn", digits, zoo_dir=tmp_path / "empty", weights=tmp_path / "w.pt")
    reference, _ = zoo.load("cnn-digits", trained_zoo, info=digits.info)
    assert torch.equal(model(digits.test_x[:8]), reference(digits.test_x[:8]))


SHIPPED_ZOO = Path(__file__).parents[1] / "zoo"


def test_the_shipped_zoo_holds_every_model_the_demo_needs(digits):
    """`advbench run` on a fresh clone trains nothing: each of the demo's models is shipped and
    loads against its card's checksum (issue 22: the demo in two minutes with the shipped zoo)."""
    from advbench.config import demo_grid
    from advbench.run.plan import plan_grid
    from advbench.settings import Paths

    plan = plan_grid(demo_grid(), digits, Paths(zoo_dir=SHIPPED_ZOO))
    missing = [str(model.entry) for model in plan.models() if model.needs_training]
    assert not missing, f"the demo would train {missing}: train and ship them"
    for model in plan.models():
        if model.entry is not None:
            zoo.load(model.entry, SHIPPED_ZOO, info=digits.info)


def test_the_demo_gat_is_the_shipped_gat_recipe_cut_to_40_epochs():
    """The demo's gat (issue 22: from an empty zoo in five minutes) differs from `gat-digits` in
    its epochs only, so its training is the first 40 epochs of gat-digits's own."""
    full, short = zoo.read_card("gat-digits", SHIPPED_ZOO), zoo.read_card("gat-digits-epochs=40", SHIPPED_ZOO)
    assert (full.hyperparameters["epochs"], short.hyperparameters["epochs"]) == (100, 40)
    assert {**short.hyperparameters, "epochs": 100} == full.hyperparameters
    assert short.seed == full.seed
