"""Progress reporting: the only module that drives rich progress bars.

Long-running code takes an `Observer` and calls `task(...)`/`message(...)`; it never
prints. The CLI picks rich bars on a terminal and plain lines otherwise.
"""

from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

# advance(n, work): n more items done (fractions while a batch is attacked) and, in a task with a
# `work` total, the work they carried (expected seconds); the time left follows the work when it is known
Advance = Callable[..., None]
TimeLeft = Callable[[], "float | None"]  # the caller's own seconds left, asked whenever a line is told
PLAIN_PROGRESS_SECONDS = 30.0  # how often plain output reports a long task's progress


class Observer:
    """Silent observer: the default for library use and tests."""

    def message(self, text: str) -> None:
        pass

    def detail(self, text: str) -> None:
        """A line for logs (which attack settings a cell ran with): printed by plain output, left
        out on a terminal, where the progress bars already say what runs and the story must fit
        one screen."""

    @contextmanager
    def task(self, description: str, total: int, work: float | None = None,
             done_before: int = 0, seconds_left: TimeLeft | None = None) -> Iterator[Advance]:
        """A task of `total` items; with `work`, the items are unequal (a grid's cells) and each
        advance says how much of `work` it carried, so the time left is the work's, not the count's.
        `done_before` items were finished by an earlier session (a resumed training): they count
        as done but not in the pace, which is this session's. `seconds_left`, when the caller can
        tell it better than a pace (a pool's driver, `run.pool_time`), gives the seconds left;
        where it returns None, the pace does."""
        yield lambda n=1, work=None: None


class PlainObserver(Observer):
    """Messages as plain lines on stderr; no bars, so logs and pipes stay clean. A long task
    prints a progress line (done, elapsed, time left) every `interval` seconds, and a heartbeat
    line when it has been silent that long (an attack deep in one batch), so a log never goes
    quiet for more than `interval` seconds."""

    def __init__(self, interval: float = PLAIN_PROGRESS_SECONDS) -> None:
        self.interval = interval

    def message(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def detail(self, text: str) -> None:
        self.message(text)

    @contextmanager
    def task(self, description: str, total: int, work: float | None = None,
             done_before: int = 0, seconds_left: TimeLeft | None = None) -> Iterator[Advance]:
        start = time.monotonic()
        weighted = bool(work and work > 0)
        # last: when a line was last printed; moved: when progress was last made
        state = {"done": float(done_before), "work": 0.0, "last": start, "moved": start}
        lock = threading.Lock()

        def line(now: float, heartbeat: bool) -> str:
            text = f"{description}: {state['done']:.0f}/{total}, {_clock(now - start)} elapsed"
            told = seconds_left() if seconds_left is not None else None
            if told is not None:
                return text + f", about {_clock(told)} left"
            if heartbeat:  # no time left: the pace before a silence says nothing about its end
                return text + f", still working (no progress for {_clock(now - state['moved'])})"
            left = time_left(now - start, state["work"], work) if weighted else \
                time_left(now - start, state["done"], total, done_before)
            return text + (f", about {_clock(left)} left" if left is not None else "")

        def advance(n: float = 1, work: float | None = None) -> None:
            with lock:
                state["done"] += n
                state["work"] += n if work is None else work
                now = state["moved"] = time.monotonic()
                if now - state["last"] >= self.interval and 0 < state["done"] < total:
                    state["last"] = now
                    self.message(line(now, heartbeat=False))

        stop = threading.Event()

        def heartbeat() -> None:
            while not stop.wait(self.interval):
                with lock:
                    now = time.monotonic()
                    if now - state["last"] >= self.interval:  # moved since the last line: a normal one
                        self.message(line(now, heartbeat=state["moved"] <= state["last"] or not state["work"]))
                        state["last"] = now

        beating = threading.Thread(target=heartbeat, name=f"progress: {description}", daemon=True)
        beating.start()
        try:
            yield advance
        finally:
            stop.set()
            beating.join()


def time_left(elapsed: float, done: float, total: float, done_before: float = 0) -> float | None:
    """Seconds left at this session's pace (items past `done_before` in `elapsed` seconds); None
    before this session has done anything or after everything is done."""
    if not done_before < done < total:
        return None
    return elapsed * (total - done) / (done - done_before)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class RichObserver(Observer):
    """Rich progress bars on stderr for an interactive terminal."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
        from rich.text import Text

        self._console = Console(stderr=True)

        class TimeLeftColumn(TimeRemainingColumn):
            """Rich's time left, unless the task's caller tells its own (`seconds_left`)."""

            def render(self, task):  # type: ignore[no-untyped-def]
                told = task.fields.get("seconds_left")
                seconds = told() if told is not None else None
                return super().render(task) if seconds is None else Text(_clock(seconds), style="progress.remaining")

        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[count]}"),
            TimeElapsedColumn(), TimeLeftColumn(), console=self._console, transient=True,
        )
        self._depth = 0

    def message(self, text: str) -> None:
        self._console.print(text, highlight=False, markup=False)

    @contextmanager
    def task(self, description: str, total: int, work: float | None = None,
             done_before: int = 0, seconds_left: TimeLeft | None = None) -> Iterator[Advance]:
        """The bar and rich's time left follow `work` when given (the count is shown beside it).
        Rich's speed comes from advances only, so `done_before` fills the bar without speeding it."""
        if self._depth == 0:
            self._progress.start()
        self._depth += 1
        weighted = bool(work and work > 0)
        done = [float(done_before)]
        task_id = self._progress.add_task(description, total=work if weighted else total,
                                          completed=0 if weighted else done_before, count=f"{done_before}/{total}",
                                          seconds_left=seconds_left)

        def advance(n: float = 1, work: float | None = None) -> None:
            done[0] += n
            self._progress.update(task_id, advance=(n if work is None else work) if weighted else n,
                                  count=f"{done[0]:.0f}/{total}")

        try:
            yield advance
        finally:
            self._progress.remove_task(task_id)
            self._depth -= 1
            if self._depth == 0:
                self._progress.stop()


def observer_for_terminal(quiet: bool = False) -> Observer:
    if quiet:
        return Observer()
    return RichObserver() if sys.stderr.isatty() else PlainObserver()
