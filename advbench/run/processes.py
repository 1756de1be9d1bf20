"""The process-pool executor: the session's jobs as sample shards in worker processes here.

A grid of small models spends its time in per-step overhead (Python, small kernels), which
torch's threads do not share out; one process per core does. The driver opens the same
`Session` as a local run and hands the shards (`run.shards`) to a pool of `workers` processes
(spawned: no forked torch thread pools), each with `threads` torch threads. The records are
the same as a local run's (per-batch seeds, per-batch parts); an interruption keeps every
finished batch, and `--resume` runs only the rest.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

import torch

from ..contract import Manifest
from ..progress import Observer
from ..store import RunStore
from .plan import Plan
from .session import Session
from .shards import Shard, ShardResult, run_shard, run_shards


def _use_threads(threads: int) -> None:
    torch.set_num_threads(threads)


class ProcessPool:
    """Shards in `workers` spawned processes of `threads` torch threads each."""

    def __init__(self, workers: int, threads: int) -> None:
        self.executor = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                            initializer=_use_threads, initargs=(threads,))

    def submit(self, shard: Shard) -> Future:
        return self.executor.submit(run_shard, shard)

    def next_done(self, pending: list[Future]) -> tuple[ShardResult, list[Future]]:
        done, _ = wait(pending, return_when=FIRST_COMPLETED)
        first = next(future for future in pending if future in done)
        return first.result(), [future for future in pending if future is not first]

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


def worker_threads(workers: int, threads: int | None) -> int:
    """torch threads per worker: as asked, else the cores shared out."""
    return threads or max(1, (os.cpu_count() or 1) // workers)


def run_grid_in_processes(plan: Plan, store: RunStore, *, observer: Observer, workers: int, reuse: bool = True,
                          fail_fast: bool = False) -> Manifest:
    """The process-pool counterpart of `run.local.run_grid` (see the module docstring)."""
    with store.lock():
        session = Session.open(plan, store, observer, reuse)
        todo = session.jobs(fail_fast)
        with observer.task("grid cells", len(todo), work=session.estimate(todo)) as advance:
            pool = ProcessPool(workers, worker_threads(workers, plan.grid.threads))
            try:
                run_shards(pool, session, todo, 0, advance, fail_fast)
            finally:
                pool.close()
    return session.manifest
