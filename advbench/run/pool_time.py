"""The time left of a pool's shards, told from the driver's side: what its workers still have.

A grid's progress counts work in ceilings (each cell's attack at its full budget, `estimate.py`),
and the demo's cells use 0.34 to 1.2 of theirs, so a pace read off the work returned so far
swings with whichever shards happened to return first: 0.13x to 3.8x of the truth on the demo
(bench/RESULTS.md). The driver knows more than a pace: which shards have not started, which run
and for how long, and how many real seconds a ceiling second took in the shards that returned.
The workers share what is left, except that no shard is split between them.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, Callable


class PoolTimeLeft:
    """Called, the seconds the pool's shards still need (None when none is left to estimate).
    The driver says when it submits a shard (its expected work, a ceiling in seconds) and when
    one returns (its real seconds); shards start in submission order as workers free up, as a
    process pool runs them. Before any shard returned, a ceiling second counts as a second."""

    def __init__(self, workers: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.workers, self.clock = max(1, workers), clock
        self.waiting: deque[tuple[Any, float]] = deque()
        self.running: dict[Any, tuple[float, float]] = {}  # shard -> (work, when it started)
        self.returned_seconds = self.returned_work = 0.0

    def submitted(self, shard: Any, work: float) -> None:
        if len(self.running) < self.workers:
            self.running[shard] = (work, self.clock())
        else:
            self.waiting.append((shard, work))

    def returned(self, shard: Any, seconds: float) -> None:
        if shard in self.running:
            work, _ = self.running.pop(shard)
        else:  # a pool that did not keep to the order (Ray): it ran a shard thought waiting
            work = next(w for s, w in self.waiting if s == shard)
            self.waiting = deque((s, w) for s, w in self.waiting if s != shard)
        self.returned_seconds += seconds
        self.returned_work += work
        while self.waiting and len(self.running) < self.workers:
            next_shard, next_work = self.waiting.popleft()
            self.running[next_shard] = (next_work, self.clock())

    def seconds_per_work(self) -> float:
        return self.returned_seconds / self.returned_work if self.returned_work > 0 else 1.0

    def __call__(self) -> float | None:
        ratio, now = self.seconds_per_work(), self.clock()
        running = [max(0.0, work * ratio - (now - started)) for work, started in self.running.values()]
        left = sum(work for _, work in self.waiting) * ratio + sum(running)
        if left <= 0:  # the running shards outlasted their estimate: no honest figure left
            return None
        return max(left / self.workers, max(running, default=0.0))
