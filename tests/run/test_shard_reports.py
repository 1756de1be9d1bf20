"""Running shards report to the driver (issue 22): in a process-pool run the grid's work and
time left move while cells run, not only when a shard returns, and a worker's messages reach
the user instead of ending in the worker."""

from __future__ import annotations

import time
from contextlib import contextmanager

import pytest

from advbench.config import grid_from_dict
from advbench.progress import Observer
from advbench.run import Paths, plan_grid
from advbench.run.processes import ProcessPool
from advbench.run.session import Session
from advbench.run.shards import ShardReporter, run_shard, run_shards
from advbench.store import RunStore

GRID = {"samples": 20, "batch_size": 10, "seed": 1, "defenses": ["cnn"], "sanity": False,
        "attacks": [{"name": "pgd-linf", "epsilons": [0.005], "steps": 40}]}


class Recorder(Observer):
    """The driver's observer: every message and every advance of the grid task, in order."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.advances: list[tuple[float, float]] = []
        self.work = 0.0

    def message(self, text: str) -> None:
        self.messages.append(text)

    @contextmanager
    def task(self, description, total, work=None, done_before=0):
        self.work = work or 0.0
        yield lambda n=1, work=None: self.advances.append((n, work))


class InProcessPool:
    """Runs each shard here as it is submitted, keeping what it reported (every advance, as
    with a report interval of 0) for the driver's `next_done`; each shard's first report is
    delivered once more after its return, as a queue can deliver it late."""

    def __init__(self) -> None:
        self.results: dict[int, tuple] = {}
        self.reports: dict[int, list] = {}
        self.late: list = []

    def submit(self, shard):
        handle, sent = len(self.results), []
        self.results[handle] = run_shard(shard, report=sent.append, report_seconds=0.0)
        self.reports[handle] = sent + [(shard.cell.id, shard.start, f"note from shard {shard.start}")]
        return handle

    def next_done(self, pending, on_report):
        first, rest = pending[0], pending[1:]
        for report in self.late + self.reports[first]:
            on_report(report)
        self.late = self.reports[first][:1]
        return self.results[first], rest


def _session(tmp_path, digits, trained_zoo, observer):
    grid = grid_from_dict(GRID)
    plan = plan_grid(grid, digits, Paths(zoo_dir=trained_zoo))
    store = RunStore.create(tmp_path / "run", grid.fingerprint())
    return Session.open(plan, store, observer, True)


def test_running_shards_credit_their_work_before_they_return_never_all_of_it(tmp_path, digits, trained_zoo):
    observer = Recorder()
    session = _session(tmp_path, digits, trained_zoo, observer)
    todo = session.jobs(False)
    pool = InProcessPool()
    with observer.task("grid cells", len(todo), work=session.estimate(todo)) as advance:
        run_shards(pool, session, todo, 0, advance, fail_fast=False)
    assert set(session.manifest.finished) == {todo[0].id}
    shard_work = session.expected_seconds(todo[0].cell) * 10  # two shards of 10 samples each
    assert shard_work > 0
    # each shard: credits while it ran (at most 95%), then the rest as it returned
    work = [w for n, w in observer.advances if n == 0]
    reports = [sum(isinstance(r[2], float) for r in pool.reports[h]) for h in (0, 1)]
    assert min(reports) > 1, "the shards sent no progress"
    first, second = work[:reports[0] + 1], work[reports[0] + 1:]
    assert sum(first[:-1]) == 0  # before any shard returned there is no pace to credit a second by
    assert 0 < sum(second[:-1]) <= 0.95 * shard_work + 1e-9  # then the first one's pace
    for shard in (first, second):
        assert sum(shard) == pytest.approx(shard_work)  # the late report of the first is dropped
    assert len(second) == reports[1] + 1
    assert observer.messages == ["note from shard 0", "note from shard 10"]


def test_a_reporter_sends_its_seconds_at_most_every_interval_and_its_messages_at_once():
    sent = []
    quiet = ShardReporter(sent.append, "cell", 10, interval=3600.0)
    with quiet.task("cell", 20) as advance:
        for _ in range(20):
            advance(1)
    assert sent == []  # within the interval nothing is sent: the shard's return credits it all
    chatty = ShardReporter(sent.append, "cell", 10, interval=0.0, started=time.perf_counter() - 5.0)
    with chatty.task("cell", 20) as advance:
        advance(5)
        advance(2.5)
    chatty.message("warning: out of memory")
    assert [r[:2] for r in sent] == [("cell", 10)] * 3
    assert 5.0 <= sent[0][2] <= sent[1][2] < 60.0 and sent[2][2] == "warning: out of memory"


@pytest.mark.subprocess
def test_a_process_pool_moves_the_grid_while_a_shard_runs(tmp_path, digits, trained_zoo):
    """Real workers: two shards of a few seconds in one worker; the second's reports, at the
    first one's pace, credit work before it returns."""
    observer = Recorder()
    grid = grid_from_dict({**GRID, "attacks": [{"name": "pgd-linf", "epsilons": [0.005], "steps": 1500}]})
    plan = plan_grid(grid, digits, Paths(zoo_dir=trained_zoo))
    session = Session.open(plan, RunStore.create(tmp_path / "run", grid.fingerprint()), observer, True)
    todo = session.jobs(False)
    pool = ProcessPool(1, 1)
    try:
        with observer.task("grid cells", len(todo), work=session.estimate(todo)) as advance:
            run_shards(pool, session, todo, 0, advance, fail_fast=False)
    finally:
        pool.close()
    work = [w for n, w in observer.advances if n == 0]
    returned = session.expected_seconds(todo[0].cell) * 10
    first = next(i for i, w in enumerate(work) if w == pytest.approx(returned))  # the first shard returned
    assert 0 < sum(work[first + 1:-1]) <= 0.95 * returned + 1e-9, observer.advances
