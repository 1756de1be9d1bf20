"""The run lock: one holder at a time, also when several processes take over a stale lock file."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys

import pytest

from advbench.errors import AdvbenchError
from advbench.store import LOCK, RunStore


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _contend(path: str, barrier, outcomes) -> None:
    """Take the lock once; while holding it, create a marker that only one holder may create."""
    store = RunStore(path)
    barrier.wait()
    try:
        with store.lock():
            try:
                fd = os.open(os.path.join(path, "holder"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                outcomes.put("both held it")
                return
            os.close(fd)
            os.unlink(os.path.join(path, "holder"))
            outcomes.put("held")
    except AdvbenchError:
        outcomes.put("refused")


def test_two_processes_taking_over_a_stale_lock_never_both_hold_it(tmp_path):
    context = multiprocessing.get_context("fork")
    dead = _dead_pid()
    seen = []
    for _ in range(40):
        (tmp_path / LOCK).write_text(str(dead))  # left behind by a process that died
        barrier, outcomes = context.Barrier(2), context.Queue()
        workers = [context.Process(target=_contend, args=(str(tmp_path), barrier, outcomes)) for _ in range(2)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(30)
        seen += [outcomes.get(timeout=5) for _ in workers]
    assert "both held it" not in seen
    assert "held" in seen


def test_a_live_holder_refuses_a_second_process_in_one_line(tmp_path):
    store = RunStore(tmp_path)
    with store.lock():
        context = multiprocessing.get_context("fork")
        barrier, outcomes = context.Barrier(1), context.Queue()
        worker = context.Process(target=_contend, args=(str(tmp_path), barrier, outcomes))
        worker.start()
        worker.join(30)
        assert outcomes.get(timeout=5) == "refused"
        with pytest.raises(AdvbenchError, match=f"being run by process {os.getpid()}"):
            with RunStore(tmp_path).lock():
                pass
    assert not (tmp_path / LOCK).exists()
    with store.lock():  # free again
        pass


def test_resuming_a_run_that_cannot_be_written_is_one_line(tmp_path, monkeypatch):
    real_open = os.open

    def read_only(path, flags, *args):
        if str(path).endswith(LOCK):
            raise PermissionError(13, "Permission denied")
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(AdvbenchError, match="cannot be written"):
        with RunStore(tmp_path).lock():
            pass
