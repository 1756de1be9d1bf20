"""The process-pool executor: the session's jobs as sample shards in worker processes here.

A grid of small models spends its time in per-step overhead (Python, small kernels), which
torch's threads do not share out; one process per core does. The driver opens the same
`Session` as a local run and hands the shards (`run.shards`) to a pool of `workers` processes
(spawned: no forked torch thread pools), each with `threads` torch threads. The records are
the same as a local run's (per-batch seeds, per-batch parts); an interruption keeps every
finished batch, and `--resume` runs only the rest. Each worker gets a queue to the driver when
the pool starts it, on which its running shard sends its messages.
"""

from __future__ import annotations

import multiprocessing
import queue
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Callable

import torch

from ..contract import Manifest
from ..progress import Observer
from ..store import RunStore
from .device import torch_threads, worker_threads
from .plan import Plan
from .pool_time import PoolTimeLeft
from .session import Session
from .shards import Shard, ShardResult, run_shard, run_shards

MESSAGE_POLL_SECONDS = 1.0  # how often the driver passes on the workers' messages while it waits


_messages: Any = None  # in a worker: its queue to the driver, given by the pool when it starts the worker


def _start_worker(threads: int, messages: Any) -> None:
    global _messages
    torch.set_num_threads(threads)
    messages.cancel_join_thread()  # an exiting worker does not wait for the driver to read it
    _messages = messages


def _run_sending_messages(shard: Shard) -> ShardResult:
    return run_shard(shard, send_message=_messages.put)


class ProcessPool:
    """Shards in `workers` spawned processes of `threads` torch threads each; while the driver
    waits for one to return, it passes on the messages the running ones send."""

    def __init__(self, workers: int, threads: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.messages = context.Queue()  # a worker receives it as it starts (a queue cannot travel with a task)
        self.executor = ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                                            initargs=(threads, self.messages))

    def submit(self, shard: Shard) -> Future:
        return self.executor.submit(_run_sending_messages, shard)

    def next_done(self, pending: list[Future], on_message: Callable[[str], None]
                  ) -> tuple[ShardResult, list[Future]]:
        while True:
            done, _ = wait(pending, timeout=MESSAGE_POLL_SECONDS, return_when=FIRST_COMPLETED)
            self._pass_on(on_message)
            if done:
                first = next(future for future in pending if future in done)
                return first.result(), [future for future in pending if future is not first]

    def _pass_on(self, on_message: Callable[[str], None]) -> None:
        while True:
            try:
                message = self.messages.get_nowait()
            except queue.Empty:
                return
            on_message(message)

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


def run_grid_in_processes(plan: Plan, store: RunStore, *, observer: Observer, workers: int, reuse: bool = True,
                          fail_fast: bool = False) -> Manifest:
    """The process-pool counterpart of `run.local.run_grid` (see the module docstring). The
    driver times its estimate with the workers' threads: timed with more (torch's default), a
    busy machine's thread barriers put the demo's ceilings 3.5x to 7x over, unevenly."""
    threads = worker_threads(workers, plan.grid.threads)
    with store.lock(), torch_threads(threads):
        session = Session.open(plan, store, observer, reuse)
        todo = session.jobs(fail_fast)
        time_left = PoolTimeLeft(workers)
        with observer.task("grid cells", len(todo), work=session.estimate(todo), seconds_left=time_left) as advance:
            pool = ProcessPool(workers, threads)
            try:
                run_shards(pool, session, todo, 0, advance, fail_fast, time_left)
            finally:
                pool.close()
    return session.manifest
