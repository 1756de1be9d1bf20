"""Work inside a cell survives Ctrl-C: every finished batch is kept as a part, and `--resume`
continues the cell from there with records identical to an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from advbench.run import cell as cell_module
from advbench.store import RunStore, list_runs
from helpers import invoke

ATTACK = ["attack", "cnn", "--attack", "pgd-linf", "--eps", "0.05", "--eps", "0.1", "--steps", "150",
          "--samples", "50", "--batch-size", "10", "--no-sanity", "--save-adversarials", "--format", "csv"]


def _records(store: RunStore) -> pd.DataFrame:
    return store.records().drop(columns=["seconds"])


def _saved(store: RunStore):
    manifest = store.manifest()
    return store.read_adversarials("cnn__pgd-linf", manifest.adversarials["cnn__pgd-linf"])


@pytest.mark.subprocess
def test_sigint_inside_a_cell_then_resume_gives_the_uninterrupted_records(isolated, trained_zoo):
    env = {**os.environ, "ADVBENCH_ZOO": str(trained_zoo), "ADVBENCH_RESULTS": str(isolated / "results")}
    # a background shell starts its children with SIGINT ignored; Python then installs no Ctrl-C handler
    child = subprocess.Popen([sys.executable, "-m", "advbench", *ATTACK], env=env, cwd=isolated,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list((isolated / "results").glob("*/records/*.part-*.csv")):
        time.sleep(0.05)
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=120)
    assert child.returncode == 130, stderr
    (interrupted,) = list_runs(isolated / "results")
    kept = len(list(interrupted.path.glob("records/*.part-*.csv")))
    assert 1 <= kept < 5, "the interruption should land inside the cell"
    assert f"0 finished cell(s) and {kept} finished batch(es) of 1 unfinished cell(s) are kept" in stderr
    assert "--resume" in stderr

    resumed = invoke(*ATTACK, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert "cnn__pgd-linf" in interrupted.manifest().finished
    assert not list(interrupted.path.glob("*/*.part-*"))  # merged, then dropped

    whole = invoke(*ATTACK, "--fresh", "--results-dir", isolated / "whole")
    assert whole.exit_code == 0, whole.output
    (uninterrupted,) = list_runs(isolated / "whole")
    pd.testing.assert_frame_equal(_records(interrupted), _records(uninterrupted))
    for key in ("samples", "epsilons", "adversarials"):
        assert _saved(interrupted)[key].equal(_saved(uninterrupted)[key]), key


def test_a_resumed_cell_skips_the_batches_it_kept(isolated, monkeypatch):
    calls = []
    original = cell_module.attack_in_fitting_batches

    def third_batch_interrupts(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(cell_module, "attack_in_fitting_batches", third_batch_interrupts)
    args = ["attack", "cnn", "--attack", "fgsm", "--eps", "0.1", "--samples", "50", "--batch-size", "10",
            "--no-sanity", "--format", "csv"]
    assert invoke(*args).exit_code == 130
    calls.clear()
    monkeypatch.setattr(cell_module, "attack_in_fitting_batches", original)
    counted = []
    monkeypatch.setattr(cell_module, "attack_in_fitting_batches", lambda *a, **k: counted.append(1) or original(*a, **k))
    assert invoke(*args, "--resume").exit_code == 0
    assert len(counted) == 3  # batches 3, 4 and 5 of 5
