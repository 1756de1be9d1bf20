"""The `advbench` command line: thin commands that parse, call the library and print."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from .errors import AdvbenchError

DEBUG_ENV = "ADVBENCH_DEBUG"


class AdvbenchGroup(click.Group):
    """Turns errors into one line and a non-zero exit; `--debug` shows the traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        debug = ctx.params.get("debug") or os.environ.get(DEBUG_ENV) == "1"
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
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.version_option(package_name="advbench")
def main(debug: bool) -> None:
    """advbench: train defenses, attack them, and report results a reviewer can trust."""


# ----------------------------------------------------------------------------- shared options

def _dirs(func):
    func = click.option("--zoo-dir", type=click.Path(path_type=Path), default=None, envvar="ADVBENCH_ZOO",
                        help="Checkpoint directory [default: ./zoo, or $ADVBENCH_ZOO].")(func)
    func = click.option("--data-dir", type=click.Path(path_type=Path), default=None, envvar="ADVBENCH_DATA",
                        help="Dataset directory [default: ~/.cache/advbench/data, or $ADVBENCH_DATA].")(func)
    func = click.option("--download", is_flag=True, help="Download torchvision datasets that are missing.")(func)
    func = click.option("--model-dir", type=click.Path(path_type=Path), default=None, expose_value=False,
                        callback=_set_model_dir, help="RobustBench model directory for robustbench:MODEL defenses "
                        "[default: ./models, or $ADVBENCH_ROBUSTBENCH_DIR].")(func)
    return func


def _set_model_dir(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
    """--model-dir is read where RobustBench models load (also inside Ray workers): the environment."""
    if value is not None:
        os.environ["ADVBENCH_ROBUSTBENCH_DIR"] = str(value)


def _results_dir(func):
    return click.option("--results-dir", type=click.Path(path_type=Path), default=None, envvar="ADVBENCH_RESULTS",
                        help="Run output directory [default: ./results, or $ADVBENCH_RESULTS].")(func)


FORMATS = ["table", "csv", "json", "markdown", "latex", "html", "robustbench"]


def _format(func):
    return click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
                        help="Output format (latex: booktabs table; html: one self-contained file; robustbench: "
                             "JSON leaderboard entries).")(func)


def _grid_overrides(func):
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
        click.option("--sanity/--no-sanity", default=None,
                     help="Add the masking sanity attacks (small Square, transfer from cnn) [default: on]."),
        click.option("--save-adversarials/--no-save-adversarials", default=None,
                     help="Keep each cell's adversarial inputs beside its records (for `advbench show`)."),
    ]):
        func = option(func)
    return func


def _observer():
    from .progress import observer_for_terminal

    return observer_for_terminal()


def _report_options(func):
    func = click.option("--alpha", type=float, default=0.01, show_default=True,
                        help="Significance level of the McNemar tests.")(func)
    func = click.option("--holm/--no-holm", default=True, show_default=True,
                        help="Holm-Bonferroni correction across the comparison table's tests.")(func)
    func = click.option("--false-alarm", type=float, default=0.05, show_default=True,
                        help="Clean-input false-alarm rate for the detection rate of reject-option defenses.")(func)
    return func


# ----------------------------------------------------------------------------- list / zoo

@main.command("list")
@click.argument("kind", required=False, type=click.Choice(["defenses", "attacks", "datasets"]))
@click.option("--params", is_flag=True, help="Also show each entry's hyperparameters and defaults.")
def list_command(kind: str | None, params: bool) -> None:
    """List defenses, attacks and datasets: built-in and from plugin packages."""
    from . import registry
    from .config import default_epsilon_text
    from .options import describe_parameters

    tables = {"defenses": registry.defenses, "attacks": registry.attacks, "datasets": registry.datasets}
    for name, reg in tables.items():
        if kind and kind != name:
            continue
        click.echo(f"{name}:")
        for entry in reg.entries():
            status = f"BROKEN ({entry.error})" if entry.broken else entry.description
            click.echo(f"  {entry.name:<16} {status}  [{entry.origin}]")
            if params and not entry.broken and isinstance(entry.obj, type):
                click.echo(f"  {'':<16} {describe_parameters(entry.obj, dict(entry.preset)) or '(no options)'}")
    if params and kind in (None, "datasets"):
        click.echo(f"default epsilons (attacks without their own): {default_epsilon_text()}")


@main.group("zoo")
def zoo_group() -> None:
    """Inspect trained checkpoints."""


@zoo_group.command("list")
@click.option("--zoo-dir", type=click.Path(path_type=Path), default=None, envvar="ADVBENCH_ZOO")
def zoo_list(zoo_dir: Path | None) -> None:
    """List checkpoints in the zoo with their verified cards (entries that fail verification say why)."""
    from .zoo import default_zoo_dir, list_entries

    entries = list_entries(zoo_dir)
    if not entries:
        click.echo(f"no checkpoints in {zoo_dir or default_zoo_dir()}; train one with: advbench train cnn")
        return
    click.echo(f"{'name':<24} {'defense':<10} {'dataset':<14} {'clean acc':>9} {'s/epoch':>8}  created")
    for entry in entries:
        c = entry.card
        if c is None:
            click.echo(f"{entry.name:<24} UNVERIFIED: {entry.problem}")
            continue
        click.echo(f"{c.name:<24} {c.defense:<10} {c.dataset:<14} {100 * c.clean_accuracy:>8.1f}% "
                   f"{c.seconds_per_epoch:>8.3f}  {c.created}")


# ----------------------------------------------------------------------------- train

def parse_extra_options(args: list[str]) -> dict[str, str]:
    """`--name value` pairs (and bare `--flag` for true) left over by click, as hyperparameters."""
    options: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or len(arg) < 3:
            raise AdvbenchError(f"unexpected argument {arg!r}")
        name, sep, value = arg[2:].partition("=")
        if not sep:
            if i + 1 < len(args) and not args[i + 1].startswith("--"):
                value, i = args[i + 1], i + 1
            else:
                value = "true"
        options[name.replace("-", "_")] = value
        i += 1
    return options


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("defense")
@click.option("--dataset", default="digits", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--name", default=None, help="Zoo entry name [default: DEFENSE-DATASET].")
@click.option("--device", default="auto", show_default=True)
@click.option("--force", is_flag=True, help="Overwrite an existing zoo entry; discard an interrupted training of it "
              "that had other settings.")
@_dirs
@click.pass_context
def train(ctx: click.Context, defense: str, dataset: str, seed: int, name: str | None, device: str, force: bool,
          zoo_dir: Path | None, data_dir: Path | None, download: bool) -> None:
    """Train DEFENSE and store it in the zoo (checkpoint + JSON card).

    Any hyperparameter of the defense is an option: --epochs 20, --lr 1e-3, --norm linf,
    --eps 0.3, --steps 40, --quick ... (`advbench list defenses --params` shows them).
    """
    from . import zoo
    from .data import load_dataset
    from .run.device import pick_device

    data = load_dataset(dataset, data_dir, download)
    card, reused = zoo.train_entry(defense, data, options=parse_extra_options(ctx.args), seed=seed, name=name,
                                   zoo_dir=zoo_dir, device=pick_device(device), observer=_observer(), force=force)
    target = Path(zoo_dir or zoo.default_zoo_dir()) / f"{card.name}.pt"
    if reused:
        click.echo(f"{target} was already trained with these settings (clean accuracy "
                   f"{100 * card.clean_accuracy:.2f}%); pass --force to train it again")
        return
    click.echo(f"trained {card.name}: clean accuracy {100 * card.clean_accuracy:.2f}% "
               f"({card.train_seconds:.1f}s, {card.seconds_per_epoch:.2f}s/epoch) -> {target}")


# ----------------------------------------------------------------------------- attack / run

def _evaluate(grid, *, fmt: str, results_dir: Path | None, zoo_dir: Path | None, data_dir: Path | None,
              download: bool, resume: bool = False, alpha: float = 0.01, false_alarm: float = 0.05, **options: Any):
    """Call the front door, print the report and the files written; failed cells exit non-zero."""
    from .evaluate import Paths, evaluate
    from .report import render

    observer = _observer()
    result = evaluate(grid, paths=Paths(results_dir, zoo_dir, data_dir, download), resume=resume, observer=observer,
                      alpha=alpha, false_alarm=false_alarm, **options)
    if result.report is not None:
        render(result.report, fmt, sys.stdout)
        for notice in result.report.notices:
            click.echo(notice, err=True)
    if result.written:
        observer.message(f"records, {', '.join(p.name for p in result.written)} in {result.store.path}")
    if result.failed:
        cells = len(result.manifest.cells)
        raise AdvbenchError(f"{len(result.failed)} of {cells} cells failed (the others are reported); first: "
                            f"{next(iter(result.failed.items()))[0]}: {next(iter(result.failed.values()))}")
    return result


@main.command()
@click.argument("defense")
@click.option("--attack", "attack_names", multiple=True, required=True, help="Attack name (repeatable).")
@click.option("--eps", "epsilons", multiple=True, help="Epsilon on the 0-1 scale, e.g. 0.1 or 8/255 (repeatable).")
@click.option("--steps", type=int, default=None, help="Attack iterations.")
@click.option("--step-size", default=None, help="Attack step size (absolute).")
@click.option("--restarts", type=int, default=None, help="Random restarts.")
@click.option("--eot", type=int, default=None, help="EOT samples for stochastic defenses.")
@click.option("--norm", default=None, help="Threat model for attacks with a norm option (linf, l2), e.g. autoattack.")
@click.option("--source", default=None, metavar="MODEL",
              help="Craft the examples on MODEL (e.g. an independent copy cnn@1) and transfer them.")
@click.option("--opt", "opts", multiple=True, metavar="KEY=VALUE", help="Any other attack option (repeatable).")
@click.option("--weights", type=click.Path(path_type=Path), default=None, help="Weights file for the defense.")
@click.option("--resume", is_flag=True, help="Continue the latest interrupted run of the same settings.")
@click.option("--fail-fast", is_flag=True, help="Stop at the first cell that fails (default: record it, go on).")
@click.option("--fresh", is_flag=True, help="Run every cell, even ones an earlier run computed on the same content.")
@_grid_overrides
@_format
@_report_options
@_results_dir
@_dirs
def attack(defense: str, attack_names: tuple[str, ...], epsilons: tuple[str, ...], steps: int | None,
           step_size: str | None, restarts: int | None, eot: int | None, norm: str | None, source: str | None,
           opts: tuple[str, ...],
           weights: Path | None, resume: bool, fail_fast: bool, fresh: bool, fmt: str, alpha: float, holm: bool,
           false_alarm: float,
           results_dir: Path | None, zoo_dir: Path | None, data_dir: Path | None, download: bool,
           **overrides: Any) -> None:
    """Attack one DEFENSE (a zoo/registry name, NAME:MODE, python:module:factory, or a seed range NAME@0..4)."""
    from .config import AttackSpec, DefenseSpec, Grid, validate
    from .norms import parse_epsilon
    from .options import parse_assignments
    from .specs import expand_seeds

    options: dict[str, Any] = parse_assignments(opts)
    options.update({k: v for k, v in {"steps": steps, "step_size": step_size, "restarts": restarts,
                                      "norm": norm}.items() if v is not None})
    eps = tuple(parse_epsilon(e) for e in epsilons)
    specs = tuple(AttackSpec(name, eps, tuple(sorted(options.items())), eot, source=source) for name in attack_names)
    copies = expand_seeds(defense)  # cnn@0..4: five independently trained copies, as with `run --defense`
    if weights is not None and len(copies) > 1:
        raise AdvbenchError("--weights names one model's weights, not those of a seed range")
    grid = Grid(tuple(DefenseSpec(spec, str(weights) if weights else None) for spec in copies), specs)
    grid = validate(grid.with_overrides(**overrides))
    _evaluate(grid, fmt=fmt, results_dir=results_dir, zoo_dir=zoo_dir, data_dir=data_dir, download=download,
              resume=resume, alpha=alpha, holm=holm, false_alarm=false_alarm, fail_fast=fail_fast, fresh=fresh)


@main.command()
@click.argument("grid_file", required=False, type=click.Path(path_type=Path))
@click.option("--defense", "defense_specs", multiple=True,
              help="Replace the grid's defenses (repeatable): a name, NAME:MODE or python:module:factory.")
@click.option("--weights", type=click.Path(path_type=Path), default=None,
              help="Weights file for a single --defense (e.g. a python: model).")
@click.option("--resume", is_flag=True, help="Continue the latest interrupted run of the same grid.")
@click.option("--fail-fast", is_flag=True, help="Stop at the first cell that fails (default: record it, go on).")
@click.option("--fresh", is_flag=True, help="Run every cell, even ones an earlier run computed on the same content.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="ray: cells and sample shards as Ray tasks (pip install 'advbench[ray]').")
@click.option("--address", default=None, help="Ray cluster: auto or ray://host:port [default: a local instance].")
@click.option("--shard-size", type=int, default=0, help="Samples per Ray task [default: one batch].")
@_grid_overrides
@_format
@_report_options
@_results_dir
@_dirs
def run(grid_file: Path | None, defense_specs: tuple[str, ...], weights: Path | None, resume: bool, fail_fast: bool,
        fresh: bool, executor: str,
        address: str | None, shard_size: int, fmt: str, alpha: float, holm: bool, false_alarm: float,
        results_dir: Path | None,
        zoo_dir: Path | None, data_dir: Path | None, download: bool, **overrides: Any) -> None:
    """Evaluate a defense x attack x epsilon grid (TOML); without GRID_FILE, the digits demo grid."""
    from .config import DefenseSpec, demo_grid, load_grid, validate
    from .specs import expand_seeds

    grid = load_grid(grid_file) if grid_file else demo_grid()
    if weights is not None and len(defense_specs) != 1:
        raise AdvbenchError("--weights needs exactly one --defense")
    if defense_specs:
        overrides["defenses"] = tuple(DefenseSpec(spec, str(weights) if weights else None)
                                      for d in defense_specs for spec in expand_seeds(d))
    grid = validate(grid.with_overrides(**overrides))
    _evaluate(grid, fmt=fmt, results_dir=results_dir, zoo_dir=zoo_dir, data_dir=data_dir, download=download,
              resume=resume, alpha=alpha, holm=holm, false_alarm=false_alarm, executor=executor, address=address,
              shard_size=shard_size, fail_fast=fail_fast, fresh=fresh)


@main.command()
@click.argument("defense")
@click.option("--norm", type=click.Choice(["linf", "l2"]), default="linf", show_default=True)
@click.option("--eps", "eps_text", default=None, help="Epsilon of the checks [default: 0.1 Linf, 1.0 L2].")
@click.option("--steps", type=int, default=20, show_default=True, help="Steps of the base PGD (x4 for the effort check).")
@click.option("--weights", type=click.Path(path_type=Path), default=None, help="Weights file for the defense.")
@_grid_overrides
@_format
@_results_dir
@_dirs
def check(defense: str, norm: str, eps_text: str | None, steps: int, weights: Path | None, fmt: str,
          results_dir: Path | None, zoo_dir: Path | None, data_dir: Path | None, download: bool,
          **overrides: Any) -> None:
    """Attack-failure checks on a small sample of DEFENSE before a large grid; exit code 1 if any flag fires."""
    from .check import check_grid
    from .norms import parse_epsilon

    grid = check_grid(defense, norm=norm, eps=parse_epsilon(eps_text) if eps_text else None, steps=steps,
                      weights=str(weights) if weights else None, **overrides)
    report = _evaluate(grid, fmt=fmt, results_dir=results_dir, zoo_dir=zoo_dir, data_dir=data_dir,
                       download=download).report
    if report.flags.empty:
        click.echo(f"check {defense}: no attack-failure flag fired")
        return
    click.echo(f"check {defense}: {len(report.flags)} flag(s): {', '.join(report.flags['flag'].unique())}")
    sys.exit(1)


# ----------------------------------------------------------------------------- report

@main.command()
@_results_dir
def runs(results_dir: Path | None) -> None:
    """List the runs in the results directory with their status (complete, k of n cells, failed)."""
    from .report.terminal import TextTable, write_tables
    from .store import default_results_dir, run_overviews

    directory = Path(results_dir or default_results_dir())
    found = run_overviews(directory)
    if not found:
        click.echo(f"no runs in {directory}")
        return
    rows = [[r.run_id, r.created[:19], r.dataset, r.samples, str(r.defenses), str(r.attacks), r.status]
            for r in found]
    write_tables([TextTable(f"Runs in {directory}", ["run", "created", "dataset", "samples", "defenses", "attacks",
                                                     "status"], rows, left_columns=4)], sys.stdout)


@main.command()
@click.argument("run_ids", nargs=-1)
@_format
@click.option("--view", type=click.Choice(["paper", "summary"]), default="paper", show_default=True,
              help="paper: rows attacks, columns defenses, with comparisons; summary: every metric per row.")
@click.option("--plots", "plots_dir", type=click.Path(path_type=Path), default=None,
              help="Write the CSV tables and PNG plots to this directory.")
@_report_options
@_results_dir
def report(run_ids: tuple[str, ...], fmt: str, view: str, plots_dir: Path | None, alpha: float, holm: bool,
           false_alarm: float,
           results_dir: Path | None) -> None:
    """Report runs (default: the latest) from their per-sample records; several runs on the
    same samples are combined into one table."""
    from .report import build_report, render, write_artifacts
    from .store import RunStore, default_results_dir

    directory = Path(results_dir or default_results_dir())
    stores = [RunStore.open(directory, r) for r in run_ids] or [RunStore.open(directory)]
    built = build_report(stores, alpha=alpha, false_alarm=false_alarm, holm=holm)
    render(built, fmt, sys.stdout, view)
    if plots_dir is not None:
        written = write_artifacts(built, plots_dir)
        click.echo(f"wrote {', '.join(p.name for p in written)} to {plots_dir}", err=True)


@main.command()
@click.argument("run_id", required=False)
@click.option("--defense", default=None, help="The defense whose cell to show [default: the first saved].")
@click.option("--attack", default=None, help="The attack whose cell to show [default: the first saved].")
@click.option("--eps", "eps_text", default=None, help="Epsilon to show [default: the cell's largest].")
@click.option("--count", type=int, default=8, show_default=True, help="Samples (columns) to show.")
@click.option("--out", "out_path", type=click.Path(path_type=Path), default=Path("adversarials.png"),
              show_default=True, help="PNG file to write.")
@_results_dir
@_dirs
def show(run_id: str | None, defense: str | None, attack: str | None, eps_text: str | None, count: int,
         out_path: Path, results_dir: Path | None, zoo_dir: Path | None, data_dir: Path | None,
         download: bool) -> None:
    """Draw clean / adversarial / perturbation rows of a run kept with --save-adversarials."""
    from .data import load_dataset
    from .norms import parse_epsilon
    from .report.gallery import choose_cell, draw_gallery, gallery
    from .store import RunStore, default_results_dir

    if count < 1:
        raise AdvbenchError("--count must be at least 1")
    if out_path.is_dir():
        raise AdvbenchError(f"--out {out_path} is a directory; name the PNG file to write, "
                            f"e.g. {out_path / 'adversarials.png'}")
    store = RunStore.open(Path(results_dir or default_results_dir()), run_id)
    data = load_dataset(str(store.manifest().grid.get("dataset", "digits")), data_dir, download)
    cell = choose_cell(store, defense, attack)
    shown = gallery(store, data, cell, parse_epsilon(eps_text) if eps_text else None, count)
    draw_gallery(shown, out_path)
    click.echo(f"wrote {out_path}: {shown.defense} x {shown.attack}, {len(shown.samples)} samples")


@main.command()
@click.argument("run_id", required=False)
@click.option("--defense", "sweep_defenses", multiple=True,
              help="Sweep mode: a defense to train at each --param value (repeatable, paired with --param).")
@click.option("--param", "sweep_params", multiple=True, metavar="NAME=V1,V2,...",
              help="The hyperparameter values for the matching --defense.")
@click.option("--dataset", default="digits", show_default=True, help="Sweep mode: dataset.")
@click.option("--samples", type=int, default=200, show_default=True, help="Sweep mode: test samples attacked.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--batch-size", type=int, default=100, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--train-opt", "train_opts", multiple=True, metavar="KEY=VALUE",
              help="Sweep mode: a training hyperparameter for every model (e.g. epochs=5).")
@click.option("--attack-opt", "attack_opts", multiple=True, metavar="KEY=VALUE",
              help="Sweep mode: a cw-l2 option (e.g. steps=50).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Where to write the CSV and PNG [default: the run directory].")
@_results_dir
@_dirs
def curve(run_id: str | None, sweep_defenses: tuple[str, ...], sweep_params: tuple[str, ...], dataset: str,
          samples: int, seed: int, batch_size: int, device: str, train_opts: tuple[str, ...],
          attack_opts: tuple[str, ...], out_dir: Path | None, results_dir: Path | None, zoo_dir: Path | None,
          data_dir: Path | None, download: bool) -> None:
    """Robustness curves.

    With RUN_ID (or nothing): accuracy vs epsilon of a run (default: the latest).
    With --defense/--param: benign accuracy vs rho_cw across hyperparameters (paper 003 Fig. 5),
    e.g. `advbench curve --defense pgd-at --param eps=0.05,0.1 --defense pgn --param c-l=0.25,0.5`.
    """
    from .report.terminal import write_tables
    from .store import RunStore, atomic_write_text, default_results_dir

    results = Path(results_dir or default_results_dir())
    if sweep_defenses or sweep_params:
        if run_id:
            raise AdvbenchError("give either a RUN_ID or --defense/--param, not both")
        from .data import load_dataset
        from .evaluate import Paths
        from .experiments.sweep import plan_sweep, plot_sweep, run_sweep, sweep_table
        from .options import parse_assignments

        points = plan_sweep(list(sweep_defenses), list(sweep_params))
        data = load_dataset(dataset, data_dir, download)
        table, store = run_sweep(points, data, samples=samples, seed=seed, batch_size=batch_size,
                                 paths=Paths(results, zoo_dir, data_dir, download),
                                 train_options=parse_assignments(train_opts),
                                 attack_options=parse_assignments(attack_opts), device=device, observer=_observer())
        out_dir = Path(out_dir or store.path)
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out_dir / "robustness_curve.csv", table.to_csv(index=False))
        plot_sweep(table, out_dir / "robustness_curve.png")
        write_tables([sweep_table(table)], sys.stdout)
        click.echo(f"wrote robustness_curve.csv and robustness_curve.png to {out_dir}", err=True)
        return

    from .report import build_report
    from .report.plots import plot_curves
    from .report.tables import curve_table

    store = RunStore.open(results, run_id)
    if out_dir is None and not os.access(store.path, os.W_OK):
        raise AdvbenchError(f"run {store.run_id} is read-only here; write its curves elsewhere with --out DIR")
    built = build_report([store])
    out_dir = Path(out_dir or store.path)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "curves.csv", built.curves.to_csv(index=False))
    plot_curves(built, out_dir / "curves.png")
    write_tables([curve_table(built)], sys.stdout)
    click.echo(f"wrote curves.csv and curves.png to {out_dir}", err=True)


@main.command()
@click.argument("model", default="gat")
@click.option("--dataset", default="digits", show_default=True)
@click.option("--config", "configs", multiple=True, metavar="NORM:EPS:STEPS:STEP[:RESTARTS[:RULE]]",
              help="An attack configuration (repeatable) [default: the model's training attack with 100 steps, "
                   "and 500 steps of half the size with 5 restarts].")
@click.option("--samples", type=int, default=200, show_default=True, help="Attacked out-of-class inputs per detector.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--out", "out_path", type=click.Path(path_type=Path), default=None, help="Also write the table as CSV.")
@_dirs
def detectors(model: str, dataset: str, configs: tuple[str, ...], samples: int, seed: int, device: str,
              out_path: Path | None, zoo_dir: Path | None, data_dir: Path | None, download: bool) -> None:
    """Robustness of a GAT model's detectors: AUC per detector under detector attacks (paper 001 Table 2 shape)."""
    from .data import load_dataset
    from .experiments.detector_eval import DetectorAttack, default_detector_attacks, detector_auc_table
    from .report.tables import number
    from .report.terminal import TextTable, write_tables
    from .run.device import pick_device
    from .store import atomic_write_text
    from .zoo import resolve_defense

    data = load_dataset(dataset, data_dir, download)
    torch_device = pick_device(device)
    defense = resolve_defense(model, data, zoo_dir=zoo_dir, device=torch_device, observer=_observer(),
                              train_if_missing=True)
    parsed = [DetectorAttack.parse(c) for c in configs] if configs else default_detector_attacks(defense)
    table = detector_auc_table(defense, data, parsed, samples=samples, seed=seed, device=torch_device,
                               observer=_observer())
    header = list(table.columns)
    rows = [[str(r["attack"]), *[number(float(r[c])) for c in header[1:]]] for _, r in table.iterrows()]
    write_tables([TextTable(f"AUC per detector of {model} (clean in-class vs attacked out-of-class)", header, rows)],
                 sys.stdout)
    if out_path is not None:
        atomic_write_text(out_path, table.to_csv(index=False))


@main.command()
@click.argument("models", nargs=-1)
@click.option("--dataset", default="digits", show_default=True)
@click.option("--eps", "eps_text", default="0.3", show_default=True, help="Perturbation budget (0-1 scale).")
@click.option("--norm", default="linf", show_default=True)
@click.option("--steps", type=int, default=100, show_default=True)
@click.option("--per-class", type=int, default=3, show_default=True, help="Inputs shown per target class.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "out_path", type=click.Path(path_type=Path), default=Path("targeted.png"), show_default=True)
@_dirs
def targeted(models: tuple[str, ...], dataset: str, eps_text: str, norm: str, steps: int, per_class: int, seed: int,
             out_path: Path, zoo_dir: Path | None, data_dir: Path | None, download: bool) -> None:
    """Targeted examples per class, clean beside perturbed (paper 000 Fig. 4) [default models: gat, and pgd-at
    when the zoo has it]."""
    from .data import load_dataset
    from .experiments.targeted import default_models, targeted_grid
    from .norms import parse_epsilon, parse_norm
    from .report.plots import plot_image_grid
    from .zoo import resolve_defense

    data = load_dataset(dataset, data_dir, download)
    eps, parsed_norm = parse_epsilon(eps_text), parse_norm(norm)
    loaded = {spec: resolve_defense(spec, data, zoo_dir=zoo_dir, observer=_observer(),
                                    train_if_missing=True).gradient_model()
              for spec in models or default_models(zoo_dir, dataset)}
    images, titles = targeted_grid(loaded, data.test_x, data.test_y, data.info.num_classes, per_class=per_class,
                                   eps=eps, norm=parsed_norm, steps=steps, bounds=data.info.bounds, seed=seed)
    plot_image_grid(images, titles, out_path, f"targeted {parsed_norm} eps {eps:g}, {steps} steps")
    click.echo(f"wrote {out_path}", err=True)


if __name__ == "__main__":  # pragma: no cover
    main()
