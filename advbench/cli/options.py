"""The flags commands share, each family gathered by one decorator into one option object
(`Paths`, `RunOptions`, `ReportOptions` from `advbench.settings`), so a command receives
`paths`, `run` and `report` instead of a dozen loose values; choices come from the enums."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any, Callable

import click

from ..errors import AdvbenchError
from ..settings import DEFAULT_ALPHA, DEFAULT_FALSE_ALARM, Executor, Format, Paths, ReportOptions, RunOptions, View

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def gathered(into: str, build: Callable[..., Any], options: list[Decorator]) -> Decorator:
    """Add `options` to a command and pass their values to it as one object `into=build(**values)`."""
    def decorator(func: Callable[..., Any]) -> Callable[..., Any]:
        names: list[str] = []

        @functools.wraps(func)
        def command(*args: Any, **kwargs: Any) -> Any:
            kwargs[into] = build(**{name: kwargs.pop(name) for name in names})
            return func(*args, **kwargs)

        before = len(getattr(command, "__click_params__", []))
        for option in reversed(options):
            command = option(command)
        names.extend(param.name for param in command.__click_params__[before:])
        return command
    return decorator


def path_options(results: bool = True) -> Decorator:
    """--zoo-dir, --data-dir, --download, --model-dir (and --results-dir) as `paths`."""
    options = [
        click.option("--zoo-dir", type=click.Path(path_type=Path), default=None, envvar="ADVBENCH_ZOO",
                     help="Checkpoint directory [default: ./zoo, or $ADVBENCH_ZOO]."),
        click.option("--data-dir", type=click.Path(path_type=Path), default=None, envvar="ADVBENCH_DATA",
                     help="Dataset directory [default: ~/.cache/advbench/data, or $ADVBENCH_DATA]."),
        click.option("--download", is_flag=True, help="Download torchvision datasets that are missing."),
        click.option("--model-dir", type=click.Path(path_type=Path), default=None, envvar="ADVBENCH_ROBUSTBENCH_DIR",
                     help="RobustBench model directory for robustbench:MODEL defenses "
                          "[default: ./models, or $ADVBENCH_ROBUSTBENCH_DIR]."),
    ]
    if results:
        options.insert(0, results_dir_option())
    return gathered("paths", Paths, options)


def results_dir_option() -> Decorator:
    return click.option("--results-dir", type=click.Path(path_type=Path), default=None, envvar="ADVBENCH_RESULTS",
                        help="Run output directory [default: ./results, or $ADVBENCH_RESULTS].")


def format_option() -> Decorator:
    return click.option("--format", "fmt", type=click.Choice([f.value for f in Format]), default=Format.TABLE.value,
                        show_default=True, help="Output format (latex: booktabs table; html: one self-contained file; "
                                                "robustbench: JSON leaderboard entries).")


def report_options(view: bool = False, default_view: View = View.PAPER) -> Decorator:
    """--format, the statistics' settings (and --view, by default `default_view`) as `report`."""
    options = [
        format_option(),
        click.option("--alpha", type=float, default=DEFAULT_ALPHA, show_default=True,
                     help="Significance level of the McNemar tests."),
        click.option("--holm/--no-holm", default=True, show_default=True,
                     help="Holm-Bonferroni correction within each row of the comparison table (the defense pairs "
                          "under one attack and epsilon)."),
        click.option("--false-alarm", type=float, default=DEFAULT_FALSE_ALARM, show_default=True,
                     help="Clean-input false-alarm rate for the detection rate of reject-option defenses."),
    ]
    if view:
        options.append(click.option("--view", type=click.Choice([v.value for v in View]), default=default_view.value,
                                    show_default=True, help="paper: rows attacks, columns defenses, with "
                                                            "comparisons; summary: every metric per row; brief: "
                                                            "headlines and each defense's worst case, one screen."))
        options.append(click.option("--full", is_flag=True, help="Every table: the same as --view paper."))

    def build(fmt: str, full: bool = False, **rest: Any) -> ReportOptions:
        if full:
            rest["view"] = View.PAPER.value
        return ReportOptions(Format(fmt), **{k: View(v) if k == "view" else v for k, v in rest.items()})

    return gathered("report", build, options)


def run_options(executor: bool = False) -> Decorator:
    """--resume, --fail-fast, --fresh (and the executor's flags) as `run`."""
    options = [
        click.option("--resume", is_flag=True, help="Continue the latest interrupted run of the same settings."),
        click.option("--fail-fast", is_flag=True, help="Stop at the first cell that fails (default: record it, go on)."),
        click.option("--fresh", is_flag=True,
                     help="Run every cell, even ones an earlier run computed on the same content."),
    ]
    if executor:
        options += [
            click.option("--executor", type=click.Choice([e.value for e in Executor]), default=Executor.LOCAL.value,
                         show_default=True, help="ray: cells and sample shards as Ray tasks "
                                                 "(pip install 'advbench[ray]')."),
            click.option("--address", default=None,
                         help="Ray cluster: auto or ray://host:port [default: a local instance]."),
            click.option("--shard-size", type=int, default=0, help="Samples per Ray task [default: one batch]."),
        ]
    return gathered("run", lambda executor="local", **rest: RunOptions(executor=Executor(executor), **rest), options)


def grid_overrides(func: Callable[..., Any]) -> Callable[..., Any]:
    """Flags that override a grid's settings; passed on as keyword arguments (None: not given)."""
    for option in reversed([
        click.option("--dataset", default=None, help="Dataset name [default: digits]."),
        click.option("--samples", type=int, default=None, help="Number of test samples (see --subset)."),
        click.option("--subset", type=click.Choice(["first", "random"]), default=None,
                     help="The first N test points (RobustBench's convention) or a seeded random subset "
                          "[default: random on digits, first elsewhere]."),
        click.option("--batch-size", type=int, default=None, help="Attack batch size."),
        click.option("--seed", type=int, default=None, help="Seed for the sample subset and attacks."),
        click.option("--device", default=None, help="auto, cpu or cuda[:N] [default: auto]."),
        click.option("--threads", type=int, default=None,
                     help="torch CPU threads [default: torch's choice]; on a busy machine 1 is often fastest."),
        click.option("--workers", type=int, default=None,
                     help="Run cells in this many processes on the CPU [default: 1, the demo 2]."),
        click.option("--sanity/--no-sanity", default=None,
                     help="Add the masking sanity attacks (small Square, transfer from cnn) [default: on]."),
        click.option("--save-adversarials/--no-save-adversarials", default=None,
                     help="Keep each cell's adversarial inputs beside its records (for `advbench show`)."),
        click.option("--carry-examples/--attack-every-epsilon", "carry_examples", default=None,
                     help="A sample beaten at a smaller epsilon keeps that example wherever the attack fails on it "
                          "at a larger one [default: carry]."),
    ]):
        func = option(func)
    return func


def terminal_observer() -> Any:
    from ..progress import observer_for_terminal

    return observer_for_terminal()


def evaluate_and_print(grid: Any, paths: Paths, run: RunOptions = RunOptions(),
                       report: ReportOptions = ReportOptions()) -> Any:
    """Call the front door, print the report and the files written; failed cells exit non-zero."""
    from ..evaluation import evaluate
    from ..report import render

    observer = terminal_observer()
    result = evaluate(grid, paths=paths, run=run, report=report, observer=observer)
    if result.report is not None:
        render(result.report, report.fmt, sys.stdout, report.view)
        for notice in result.report.notices:
            click.echo(notice, err=True)
    if result.written:
        tables = sum(1 for p in result.written if p.suffix == ".csv")
        figures = sum(1 for p in result.written if p.suffix == ".png")
        page = " and report.html" if any(p.suffix == ".html" for p in result.written) else ""
        observer.message(f"records, {tables} tables (CSV), {figures} figures (PNG){page} in {result.store.path}")
    if result.failed:
        first, reason = next(iter(result.failed.items()))
        raise AdvbenchError(f"{len(result.failed)} of {len(result.manifest.cells)} cells failed (the others are "
                            f"reported); first: {first}: {reason}")
    return result
