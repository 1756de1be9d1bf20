"""The `advbench` command group: every error becomes one line and a non-zero exit."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from ..errors import AdvbenchError


class AdvbenchGroup(click.Group):
    """Turns errors into one line and a non-zero exit; `--debug` shows the traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        debug = bool(ctx.params.get("debug"))
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except AdvbenchError as exc:
            if debug:
                plugin_traceback = getattr(exc, "plugin_traceback", None)
                if plugin_traceback:
                    click.echo(plugin_traceback, err=True)
                raise
            click.echo(f"error: {exc}", err=True)
            ctx.exit(2)
        except KeyboardInterrupt as exc:
            if ctx.invoked_subcommand == "train":
                click.echo("interrupted: finished epochs are kept; rerun the same train command to continue from "
                           "the last one", err=True)
            else:
                kept = getattr(exc, "kept", None) or "finished cells and batches are kept"
                click.echo(f"interrupted: {kept}; rerun the same command with --resume", err=True)
            ctx.exit(130)
        except BrokenPipeError:  # `advbench report | head`: the reader left; nothing is wrong
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            ctx.exit(0)
        except Exception as exc:
            if debug:
                raise
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            click.echo(f"error: {type(exc).__name__}: {message} (rerun with --debug for the traceback)", err=True)
            ctx.exit(1)


@click.group(cls=AdvbenchGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, envvar="ADVBENCH_DEBUG", help="Show full tracebacks on errors.")
@click.version_option(package_name="advbench")
def main(debug: bool) -> None:
    """advbench: train defenses, attack them, and report results a reviewer can trust."""
