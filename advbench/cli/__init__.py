"""The `advbench` command line: thin commands that parse, call the library and print.

One module per command family (`evaluate_commands`, `report_commands`, `zoo_commands`,
`experiment_commands`); shared flags are gathered into option objects by `options`.
"""

from . import evaluate_commands, experiment_commands, report_commands, zoo_commands  # noqa: F401 - register commands
from .app import main

__all__ = ["main"]
