"""torch's CPU threads: set by --threads (or `threads = N`), recorded in the manifest, and a hint
when the machine is busier than its cores."""

from __future__ import annotations

import os

import torch

from advbench.run import device
from advbench.store import list_runs
from helpers import Messages, invoke, one_line_error


def test_threads_are_set_and_recorded(isolated):
    before = torch.get_num_threads()
    try:
        result = invoke("attack", "cnn", "--attack", "fgsm", "--eps", "0.1", "--samples", "10", "--no-sanity",
                        "--threads", "1", "--format", "csv")
        assert result.exit_code == 0, result.output
        assert list_runs(isolated / "results")[0].manifest().threads == 1
    finally:
        torch.set_num_threads(before)


def test_a_wrong_thread_count_is_one_line(isolated):
    (isolated / "grid.toml").write_text('threads = 0\ndefenses = ["cnn"]\n[[attacks]]\nname = "fgsm"\n')
    assert "threads must be a positive integer" in one_line_error(invoke("run", isolated / "grid.toml"))


def test_a_busy_machine_gets_a_hint(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setattr(os, "getloadavg", lambda: (4.0 * (os.cpu_count() or 1), 0.0, 0.0))
    try:
        observer = Messages()
        device.use_threads(2, observer)
        assert any("try --threads 1" in line for line in observer.lines)
        quiet = Messages()
        device.use_threads(1, quiet)  # one thread has nothing to wait for
        assert not quiet.lines
    finally:
        torch.set_num_threads(before)


def test_a_busy_machine_gets_the_hint_only_when_the_attacks_run_several_threads(monkeypatch):
    """The demo's two workers run one thread each on two cores: the driver's default of two
    threads is not what attacks, so the hint would be wrong there (and it ran past 100 columns)."""
    before = torch.get_num_threads()
    monkeypatch.setattr(os, "getloadavg", lambda: (2.3, 0.0, 0.0))
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    try:
        torch.set_num_threads(2)
        pooled, alone = Messages(), Messages()
        device.use_threads(None, pooled, workers=2)
        assert not pooled.lines
        device.use_threads(None, alone)
        assert alone.lines == ["hint: load average 2.3 on 2 cores; torch's 2 threads may wait on each other: "
                               "try --threads 1"]
        assert max(len(line) for line in alone.lines) <= 100
    finally:
        torch.set_num_threads(before)
