"""A worker's messages reach the user (issue 22's silence): in a process-pool run, a warning a
cell raises in its worker (non-finite logits, an out-of-memory retry) is passed on by the driver
instead of ending in the worker."""

from __future__ import annotations

import textwrap

import pytest

from advbench.config import grid_from_dict
from advbench.evaluation import evaluate
from advbench.progress import Observer
from advbench.run import Paths, plan_grid
from advbench.run.session import Session
from advbench.run.shards import ShardMessages, run_shard, run_shards
from advbench.store import RunStore


class Recorder(Observer):
    def __init__(self) -> None:
        self.messages: list[str] = []

    def message(self, text: str) -> None:
        self.messages.append(text)


class InProcessPool:
    """Runs each shard here as it is submitted, keeping the messages it sent for `next_done`."""

    def __init__(self) -> None:
        self.results: dict[int, tuple] = {}
        self.sent: dict[int, list[str]] = {}

    def submit(self, shard):
        handle, sent = len(self.results), []
        self.results[handle] = run_shard(shard, send_message=sent.append)
        self.sent[handle] = sent + [f"note from shard {shard.start}"]
        return handle

    def next_done(self, pending, on_message):
        for text in self.sent[pending[0]]:
            on_message(text)
        return self.results[pending[0]], pending[1:]


def test_the_driver_passes_on_what_its_shards_send(tmp_path, digits, trained_zoo):
    grid = grid_from_dict({"samples": 20, "batch_size": 10, "defenses": ["cnn"], "sanity": False,
                           "attacks": [{"name": "fgsm", "epsilons": [0.1]}]})
    observer = Recorder()
    session = Session.open(plan_grid(grid, digits, Paths(zoo_dir=trained_zoo)),
                           RunStore.create(tmp_path / "run", grid.fingerprint()), observer, True)
    todo = session.jobs(False)
    run_shards(InProcessPool(), session, todo, 0, lambda n=1, work=None: None, fail_fast=False)
    assert set(session.manifest.finished) == {todo[0].id}
    assert observer.messages == ["note from shard 0", "note from shard 10"]


def test_shard_messages_go_out_as_they_are_said():
    sent = []
    messages = ShardMessages(sent.append)
    messages.message("warning: out of memory on a batch of 64; retrying in batches of 32")
    assert sent == ["warning: out of memory on a batch of 64; retrying in batches of 32"]


@pytest.mark.subprocess
def test_a_warning_raised_in_a_worker_reaches_the_user(tmp_path, digits, monkeypatch):
    """A model whose logits are NaN off the digits' 1/16 grid of pixel values: clean inputs are
    fine, an FGSM example off the grid is not, and the cell's warning was lost in the worker before."""
    (tmp_path / "offgrid_models.py").write_text(textwrap.dedent('''
        import torch
        from torch import nn


        class OffGrid(nn.Module):
            def __init__(self):
                super().__init__()
                self.linear = nn.Linear(64, 10)

            def forward(self, x):
                logits = self.linear(x.flatten(1))
                off = ((x * 16 - (x * 16).round()).abs() > 1e-4).flatten(1).any(1, keepdim=True)
                return torch.where(off, torch.full_like(logits, float("nan")), logits)
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))  # spawned workers start with the driver's sys.path
    grid = grid_from_dict({"samples": 10, "batch_size": 10, "defenses": ["python:offgrid_models:OffGrid"],
                           "sanity": False, "workers": 2, "attacks": [{"name": "fgsm", "epsilons": [0.1]}]})
    observer = Recorder()
    evaluate(grid, paths=Paths(results_dir=tmp_path / "results"), observer=observer, artifacts=False)
    assert any("returned non-finite logits on" in text for text in observer.messages), observer.messages
