"""One process at a time per run: the kernel's lock (`flock`) on the run's lock file."""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import AdvbenchError


@contextmanager
def hold(path: Path, what: str) -> Iterator[None]:
    """Hold `path` for this process; `what` names the run in the one-line errors. The lock is
    the kernel's (`flock`), so it ends with its process however that process ends: a lock file
    left by a dead process is taken over atomically, and two processes taking it over at once
    never both hold it."""
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
        except OSError as exc:
            raise AdvbenchError(f"{what} cannot be written ({path}: {exc.strerror}); copy it to a "
                                "writable place to resume it") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise AdvbenchError(f"{what} is being run by process {holder or 'another process'}; wait "
                                "for it or stop it") from None
        if _same_file(fd, path):  # not unlinked by a holder that finished between our open and flock
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        path.unlink(missing_ok=True)  # while still held: a waiting process sees the unlink and retries
        os.close(fd)


def _read_holder(fd: int) -> int:
    try:
        return int(os.pread(fd, 32, 0).decode().strip() or 0)
    except (OSError, ValueError):
        return 0


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False
