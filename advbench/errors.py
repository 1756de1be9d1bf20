"""User-facing errors: the CLI prints them as one line, without a traceback."""

from __future__ import annotations


class AdvbenchError(Exception):
    """A problem the user can fix (bad input, missing file); shown as one line."""


class AttackVerificationError(AdvbenchError):
    """An attack returned an example outside its epsilon ball or the data bounds."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run, carrying what was kept on disk (the CLI prints it)."""

    def __init__(self, kept: str) -> None:
        super().__init__(kept)
        self.kept = kept


class AttackIsolationError(AdvbenchError):
    """An attack changed the defense it was given (its weights, buffers or mode)."""
