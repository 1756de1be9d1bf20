"""Progress reporting: the only module that drives rich progress bars.

Long-running code takes an `Observer` and calls `task(...)`/`message(...)`; it never
prints. The CLI picks rich bars on a terminal and plain lines otherwise.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Callable, Iterator

Advance = Callable[[int], None]


class Observer:
    """Silent observer: the default for library use and tests."""

    def message(self, text: str) -> None:
        pass

    @contextmanager
    def task(self, description: str, total: int) -> Iterator[Advance]:
        yield lambda n=1: None


class PlainObserver(Observer):
    """Messages as plain lines on stderr; no bars, so logs and pipes stay clean."""

    def message(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)


class RichObserver(Observer):
    """Rich progress bars on stderr for an interactive terminal."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self._console = Console(stderr=True)
        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(), console=self._console, transient=True,
        )
        self._depth = 0

    def message(self, text: str) -> None:
        self._console.print(text, highlight=False, markup=False)

    @contextmanager
    def task(self, description: str, total: int) -> Iterator[Advance]:
        if self._depth == 0:
            self._progress.start()
        self._depth += 1
        task_id = self._progress.add_task(description, total=total)
        try:
            yield lambda n=1: self._progress.advance(task_id, n)
        finally:
            self._progress.remove_task(task_id)
            self._depth -= 1
            if self._depth == 0:
                self._progress.stop()


def observer_for_terminal(quiet: bool = False) -> Observer:
    if quiet:
        return Observer()
    return RichObserver() if sys.stderr.isatty() else PlainObserver()
