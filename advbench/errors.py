"""User-facing errors: the CLI prints them as one line, without a traceback."""

from __future__ import annotations


class AdvbenchError(Exception):
    """A problem the user can fix (bad input, missing file); shown as one line."""


class AttackVerificationError(AdvbenchError):
    """An attack returned an example outside its epsilon ball or the data bounds."""


class AttackIsolationError(AdvbenchError):
    """An attack changed the defense it was given (its weights, buffers or mode)."""
