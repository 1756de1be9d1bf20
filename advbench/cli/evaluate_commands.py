"""Commands that evaluate: `attack` one defense, `run` a grid, `check` a defense for attack failures."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ..errors import AdvbenchError
from ..settings import Paths, ReportOptions, RunOptions, View
from .app import main
from .options import evaluate_and_print, grid_overrides, path_options, report_options, run_options


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
@run_options()
@grid_overrides
@report_options(view=True, default_view=View.BRIEF)
@path_options()
def attack(defense: str, attack_names: tuple[str, ...], epsilons: tuple[str, ...], steps: int | None,
           step_size: str | None, restarts: int | None, eot: int | None, norm: str | None, source: str | None,
           opts: tuple[str, ...], weights: Path | None, run: RunOptions, report: ReportOptions, paths: Paths,
           **overrides: Any) -> None:
    """Attack one DEFENSE (a zoo/registry name, NAME:MODE, python:module:factory, or a seed range NAME@0..4)."""
    from ..config import AttackSpec, DefenseSpec, Grid, validate
    from ..norms import parse_epsilon
    from ..options import parse_assignments
    from ..specs import expand_seeds

    options: dict[str, Any] = parse_assignments(opts)
    options.update({k: v for k, v in {"steps": steps, "step_size": step_size, "restarts": restarts,
                                      "norm": norm}.items() if v is not None})
    eps = tuple(parse_epsilon(e) for e in epsilons)
    specs = tuple(AttackSpec(name, eps, tuple(sorted(options.items())), eot, source=source) for name in attack_names)
    copies = expand_seeds(defense)  # cnn@0..4: five independently trained copies, as with `run --defense`
    if weights is not None and len(copies) > 1:
        raise AdvbenchError("--weights names one model's weights, not those of a seed range")
    grid = Grid(tuple(DefenseSpec(spec, str(weights) if weights else None) for spec in copies), specs)
    evaluate_and_print(validate(grid.with_overrides(**overrides)), paths, run, report)


@main.command("run")
@click.argument("grid_file", required=False, type=click.Path(path_type=Path))
@click.option("--defense", "defense_specs", multiple=True,
              help="Replace the grid's defenses (repeatable): a name, NAME:MODE or python:module:factory.")
@click.option("--weights", type=click.Path(path_type=Path), default=None,
              help="Weights file for a single --defense (e.g. a python: model).")
@run_options(executor=True)
@grid_overrides
@report_options(view=True, default_view=View.BRIEF)
@path_options()
def run_command(grid_file: Path | None, defense_specs: tuple[str, ...], weights: Path | None, run: RunOptions,
                report: ReportOptions, paths: Paths, **overrides: Any) -> None:
    """Evaluate a defense x attack x epsilon grid (TOML); without GRID_FILE, the digits demo grid."""
    from ..config import DefenseSpec, demo_grid, load_grid, validate
    from ..specs import expand_seeds

    grid = load_grid(grid_file) if grid_file else demo_grid()
    if weights is not None and len(defense_specs) != 1:
        raise AdvbenchError("--weights needs exactly one --defense")
    if defense_specs:
        overrides["defenses"] = tuple(DefenseSpec(spec, str(weights) if weights else None)
                                      for d in defense_specs for spec in expand_seeds(d))
    evaluate_and_print(validate(grid.with_overrides(**overrides)), paths, run, report)


@main.command()
@click.argument("defense")
@click.option("--norm", type=click.Choice(["linf", "l2"]), default="linf", show_default=True)
@click.option("--eps", "eps_text", default=None, help="Epsilon of the checks [default: 0.1 Linf, 1.0 L2].")
@click.option("--steps", type=int, default=20, show_default=True, help="Steps of the base PGD (x4 for the effort check).")
@click.option("--weights", type=click.Path(path_type=Path), default=None, help="Weights file for the defense.")
@grid_overrides
@report_options()
@path_options()
def check(defense: str, norm: str, eps_text: str | None, steps: int, weights: Path | None, report: ReportOptions,
          paths: Paths, **overrides: Any) -> None:
    """Attack-failure checks on a small sample of DEFENSE before a large grid; exit code 1 if any flag fires."""
    from ..check import check_grid
    from ..norms import parse_epsilon

    grid = check_grid(defense, norm=norm, eps=parse_epsilon(eps_text) if eps_text else None, steps=steps,
                      weights=str(weights) if weights else None, **overrides)
    built = evaluate_and_print(grid, paths, report=report).report
    if built.flags.empty:
        click.echo(f"check {defense}: no attack-failure flag fired")
        return
    click.echo(f"check {defense}: {len(built.flags)} flag(s): {', '.join(built.flags['flag'].unique())}")
    sys.exit(1)
