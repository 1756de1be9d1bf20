"""A pool's time left from the driver's side (issue 22: the demo's estimate within 2x). The
grid's pace, read off the ceilings of whichever shards returned first, put the demo's first
reading anywhere from 0.13x to 3.8x of the truth; the driver's estimate counts what its workers
still have, at the real seconds per ceiling second of the shards returned (fake clock)."""

from __future__ import annotations

import pytest

from advbench import progress
from advbench.run.pool_time import PoolTimeLeft


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_before_any_return_a_ceiling_second_is_a_second_and_running_shards_count_down():
    clock = FakeClock()
    left = PoolTimeLeft(2, clock)
    for shard, work in enumerate([50.0, 45.0, 24.0, 22.0, 10.0]):  # costliest first, as submitted
        left.submitted(shard, work)
    assert left() == pytest.approx((50 + 45 + 24 + 22 + 10) / 2)
    clock.now = 10.0  # shards 0 and 1 have run 10 s each
    assert left() == pytest.approx((40 + 35 + 24 + 22 + 10) / 2)


def test_returned_shards_set_the_seconds_per_ceiling_second_and_free_a_worker():
    clock = FakeClock()
    left = PoolTimeLeft(2, clock)
    for shard, work in enumerate([50.0, 45.0, 24.0, 22.0, 10.0]):
        left.submitted(shard, work)
    clock.now = 30.0
    left.returned(0, 30.0)  # 50 ceiling seconds took 30: 0.6 s each; shard 2 starts now
    assert left.seconds_per_work() == pytest.approx(0.6)
    # shard 1 (45 x 0.6 = 27 s) has outrun its estimate; shard 2 has 14.4 s; 19.2 s wait
    assert left() == pytest.approx((0 + 24 * 0.6 + (22 + 10) * 0.6) / 2)


def test_no_shard_is_split_between_workers():
    clock = FakeClock()
    left = PoolTimeLeft(2, clock)
    left.submitted("long", 100.0)
    left.submitted("short", 10.0)
    clock.now = 10.0
    left.returned("short", 10.0)
    assert left() == pytest.approx(90.0)  # not 45: one worker has it all


def test_shards_that_outlast_their_estimate_leave_no_figure():
    clock = FakeClock()
    left = PoolTimeLeft(1, clock)
    left.submitted("a", 5.0)
    clock.now = 8.0
    assert left() is None


def test_a_pool_that_runs_a_waiting_shard_first_is_followed():
    left = PoolTimeLeft(1, FakeClock())
    left.submitted("a", 10.0)
    left.submitted("b", 20.0)
    left.returned("b", 10.0)  # Ray ran b first
    assert left.seconds_per_work() == pytest.approx(0.5)
    assert left() == pytest.approx(5.0)


def test_plain_lines_tell_the_callers_time_left_even_while_no_cell_returns(monkeypatch, capsys):
    clock = FakeClock()
    monkeypatch.setattr(progress.time, "monotonic", clock)
    told = [75.0]
    observer = progress.PlainObserver(interval=30)
    with observer.task("grid cells", 4, work=100.0, seconds_left=lambda: told[0]) as advance:
        clock.now += 40
        advance(1, 80.0)
        told[0] = None  # the caller has no figure: the work's pace speaks
        clock.now += 35
        advance(1, 10.0)
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["grid cells: 1/4, 0:40 elapsed, about 1:15 left",
                     "grid cells: 2/4, 1:15 elapsed, about 0:08 left"]
