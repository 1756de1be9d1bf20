"""Where a run computes: the torch device and the CPU threads."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

import torch

from ..errors import AdvbenchError
from ..progress import Observer


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise AdvbenchError(f"unknown device {name!r}: use auto, cpu or cuda[:N]") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise AdvbenchError(f"device {name} requested but CUDA is not available")
    return device


def worker_threads(workers: int, threads: int | None) -> int:
    """torch threads per worker of a process pool: as asked, else the cores shared out."""
    return threads or max(1, (os.cpu_count() or 1) // workers)


def use_threads(threads: int | None, observer: Observer, workers: int = 1) -> None:
    """Set torch's CPU threads when asked; on a machine busier than its cores, say that fewer
    threads may be faster (torch's threads then wait on each other at every barrier) when the
    attacks run with more than one: in this process, or in each of `workers` > 1 processes."""
    if threads is not None:
        torch.set_num_threads(threads)
    attacking = worker_threads(workers, threads) if workers > 1 else torch.get_num_threads()
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load > cores and attacking > 1:
        observer.message(f"hint: load average {load:.1f} on {cores} cores; torch's {attacking} threads may wait "
                         "on each other: try --threads 1")


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """torch's CPU threads in this process set to `threads` for the block, then as they were."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
