"""What many test modules share: running the CLI in-process, one-line error checks, a message-keeping observer."""

from __future__ import annotations

from click.testing import CliRunner, Result

from advbench.cli import main
from advbench.progress import Observer


def invoke(*args: object, **kwargs: object) -> Result:
    """`advbench ARGS...` in this process (stdout and stderr kept apart); `kwargs` go to CliRunner.invoke."""
    return CliRunner().invoke(main, [str(a) for a in args], **kwargs)


def one_line_error(result: Result) -> str:
    """The error line of a failed command, checked to be one line without a traceback."""
    assert result.exit_code not in (0, None), result.output
    lines = [line for line in result.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output and "rerun with --debug" not in lines[0], result.output
    return lines[0]


class Messages(Observer):
    """An observer that keeps the messages it is given (warnings, hints) for a test to read."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def message(self, text: str) -> None:
        self.lines.append(text)
