"""Per-epoch training checkpoints (`zoo/.partial/<entry>/`): read without unpickling code, and
an interrupted training with other settings is never thrown away unasked."""

from __future__ import annotations

import contextlib
import io
import os

import pytest
import torch

from advbench.defenses import training
from advbench.defenses.training import CheckpointPlace, EpochLoop
from advbench.progress import Observer
from helpers import Messages, invoke, one_line_error


class _RunsCode:
    """Unpickling this creates the file it names: proof that code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def _pickle_with_code(path, marker) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save({"identity": "x", "epochs_done": 1, "state": {}, "rng": _RunsCode(str(marker))}, buffer)
    path.write_bytes(buffer.getvalue())


def test_a_planted_pickle_in_the_partial_checkpoints_never_runs(tmp_path):
    marker = tmp_path / "code-ran"
    _pickle_with_code(tmp_path / "partial" / "training-toy.pt", marker)
    observer = Messages()
    net = torch.nn.Linear(2, 2)
    epochs = list(EpochLoop("training toy", 2, observer, CheckpointPlace(tmp_path / "partial", "identity"), model=net))
    assert epochs == [0, 1]  # started from epoch 1, did not resume anything
    assert not marker.exists()
    assert any("unreadable" in line and "training-toy.pt" in line for line in observer.lines)


def test_train_command_ignores_a_planted_pickle(isolated, tmp_path, monkeypatch):
    zoo_dir = tmp_path / "fresh-zoo"
    monkeypatch.setenv("ADVBENCH_ZOO", str(zoo_dir))
    marker = tmp_path / "code-ran"
    _pickle_with_code(zoo_dir / ".partial" / "cnn-digits" / "training.pt", marker)
    result = invoke("train", "cnn", "--epochs", "1")
    assert result.exit_code == 0, result.output
    assert not marker.exists()
    assert "training.pt is unreadable" in result.output


def test_checkpoints_hold_only_what_loads_tensors_only(tmp_path):
    """Every state an EpochLoop keeps (optimizers, generators, numpy values) loads with weights_only."""
    net = torch.nn.Linear(2, 2)
    optimizer = torch.optim.Adam(net.parameters())
    net(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    import numpy as np

    kept = training.KeptValues(auc=np.array([0.5, 0.7]), states=[net.state_dict()])
    for _ in EpochLoop("loop", 1, Observer(), CheckpointPlace(tmp_path, "identity", {"lr": 0.1}), model=net,
                       optimizer=optimizer, generator=torch.Generator(), kept=kept):
        pass
    blob = torch.load(tmp_path / "loop.pt", weights_only=True)
    assert blob["epochs_done"] == 1
    restored = training.KeptValues(auc=np.zeros(2), states=[])
    restored.load_state_dict(blob["state"]["kept"])
    assert isinstance(restored.values["auc"], np.ndarray) and restored.values["auc"].tolist() == [0.5, 0.7]


def test_a_resumed_loop_tells_its_observer_which_epochs_an_earlier_session_did(tmp_path):
    """The progress task gets the resumed epochs as `done_before` (counted, not paced) instead of
    one instant advance, which made the time left count them as this session's work."""
    net = torch.nn.Linear(2, 2)
    for epoch in EpochLoop("loop", 3, Observer(), CheckpointPlace(tmp_path, "identity"), model=net):
        if epoch == 1:
            break  # epoch 0 finished and was saved: an interruption during epoch 1

    class Record(Observer):
        def __init__(self) -> None:
            self.tasks, self.advances = [], []

        @contextlib.contextmanager
        def task(self, description, total, work=None, done_before=0):
            self.tasks.append((total, done_before))
            yield lambda n=1, work=None: self.advances.append(n)

    observer = Record()
    assert list(EpochLoop("loop", 3, observer, CheckpointPlace(tmp_path, "identity"), model=net)) == [1, 2]
    assert observer.tasks == [(3, 1)] and observer.advances == [1, 1]


@pytest.fixture
def interrupted_after_one_epoch(isolated, tmp_path, monkeypatch):
    """`advbench train cnn --epochs 3 --lr 0.001` stopped by Ctrl-C after its first epoch."""
    zoo_dir = tmp_path / "fresh-zoo"
    monkeypatch.setenv("ADVBENCH_ZOO", str(zoo_dir))
    original = EpochLoop._save

    def save_then_stop(self, done):
        original(self, done)
        raise KeyboardInterrupt

    monkeypatch.setattr(EpochLoop, "_save", save_then_stop)
    result = invoke("train", "cnn", "--epochs", "3", "--lr", "0.001")
    assert result.exit_code == 130, result.output
    monkeypatch.setattr(EpochLoop, "_save", original)
    assert (zoo_dir / ".partial" / "cnn-digits" / "training.pt").exists()
    return zoo_dir


def test_a_changed_learning_rate_does_not_silently_discard_finished_epochs(interrupted_after_one_epoch):
    line = one_line_error(invoke("train", "cnn", "--epochs", "3", "--lr", "0.01"))
    assert "1 finished epoch(s)" in line and "lr 0.001 there, 0.01 now" in line and "--force" in line
    assert (interrupted_after_one_epoch / ".partial" / "cnn-digits" / "training.pt").exists()


def test_the_same_settings_resume_after_the_last_finished_epoch(interrupted_after_one_epoch):
    resumed = invoke("train", "cnn", "--epochs", "3", "--lr", "0.001")
    assert resumed.exit_code == 0, resumed.output
    assert "resuming after epoch 1/3" in resumed.output


def test_forced_training_over_other_settings_says_what_it_discards(interrupted_after_one_epoch):
    forced = invoke("train", "cnn", "--epochs", "2", "--lr", "0.01", "--force")
    assert forced.exit_code == 0, forced.output
    assert "discarding 1 finished epoch(s)" in forced.output


def test_a_plain_plugin_defense_is_not_trainable_in_one_line(isolated):
    from advbench import Defense
    from advbench.registry import defenses

    class FixedLinear(Defense):
        def __init__(self, input_shape, num_classes):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, num_classes))

        def forward(self, x):
            return self.net(x)

    with defenses.temporarily("fixed-linear", FixedLinear):
        line = one_line_error(invoke("train", "fixed-linear"))
    assert "fixed-linear" in line and "cannot be trained" in line and "--weights" in line


def test_settings_difference_names_each_changed_setting():
    text = training.settings_difference({"seed": 0, "hyperparameters": {"lr": 0.001, "epochs": 3}},
                                        {"seed": 0, "hyperparameters": {"lr": 0.01, "epochs": 3}})
    assert text == "lr 0.001 there, 0.01 now"
