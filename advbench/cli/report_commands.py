"""Commands that read runs: `runs`, `report`, `show` (a gallery) and `curve`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from ..errors import AdvbenchError
from ..settings import Paths, ReportOptions
from .app import main
from .options import path_options, report_options, results_dir_option


@main.command()
@results_dir_option()
def runs(results_dir: Path | None) -> None:
    """List the runs in the results directory with their status (complete, k of n cells, failed)."""
    from ..report.terminal import TextTable, write_tables
    from ..run_overview import run_overviews
    from ..store import default_results_dir

    directory = Path(results_dir or default_results_dir())
    found = run_overviews(directory)
    if not found:
        click.echo(f"no runs in {directory}")
        return
    rows = [[r.run_id, r.created[:19], r.dataset, r.samples, str(r.defenses), str(r.attacks), r.status]
            for r in found]
    write_tables([TextTable(f"Runs in {directory}", ["run", "created", "dataset", "samples", "defenses", "attacks",
                                                     "status"], rows, left_columns=4)], sys.stdout)


@main.command("report")
@click.argument("run_ids", nargs=-1)
@click.option("--plots", "plots_dir", type=click.Path(path_type=Path), default=None,
              help="Write the CSV tables and PNG plots to this directory.")
@click.option("--per-attack-plots", is_flag=True,
              help="With --plots, also the reject-option threshold sweeps, one panel per attack and epsilon.")
@report_options(view=True)
@results_dir_option()
def report_command(run_ids: tuple[str, ...], plots_dir: Path | None, per_attack_plots: bool, report: ReportOptions,
                   results_dir: Path | None) -> None:
    """Report runs (default: the latest) from their per-sample records; several runs on the
    same samples are combined into one table."""
    from ..report import build_report, render, write_artifacts
    from ..store import RunStore, default_results_dir

    directory = Path(results_dir or default_results_dir())
    stores = [RunStore.open(directory, r) for r in run_ids] or [RunStore.open(directory)]
    built = build_report(stores, alpha=report.alpha, false_alarm=report.false_alarm, holm=report.holm)
    render(built, report.fmt, sys.stdout, report.view)
    if plots_dir is not None:
        written = write_artifacts(built, plots_dir, per_attack_plots=per_attack_plots)
        click.echo(f"wrote {', '.join(p.name for p in written)} to {plots_dir}", err=True)


@main.command()
@click.argument("run_id", required=False)
@click.option("--defense", default=None, help="The defense whose cell to show [default: the first saved].")
@click.option("--attack", default=None, help="The attack whose cell to show [default: the first saved].")
@click.option("--eps", "eps_text", default=None, help="Epsilon to show [default: the cell's largest].")
@click.option("--count", type=int, default=8, show_default=True, help="Samples (columns) to show.")
@click.option("--out", "out_path", type=click.Path(path_type=Path), default=Path("adversarials.png"),
              show_default=True, help="PNG file to write.")
@path_options()
def show(run_id: str | None, defense: str | None, attack: str | None, eps_text: str | None, count: int,
         out_path: Path, paths: Paths) -> None:
    """Draw clean / adversarial / perturbation rows of a run kept with --save-adversarials."""
    from ..data import load_dataset
    from ..norms import parse_epsilon
    from ..report.gallery import choose_cell, draw_gallery, gallery
    from ..store import RunStore, default_results_dir

    if count < 1:
        raise AdvbenchError("--count must be at least 1")
    if out_path.is_dir():
        raise AdvbenchError(f"--out {out_path} is a directory; name the PNG file to write, "
                            f"e.g. {out_path / 'adversarials.png'}")
    store = RunStore.open(Path(paths.results_dir or default_results_dir()), run_id)
    data = load_dataset(str(store.manifest().grid.get("dataset", "digits")), paths.data_dir, paths.download)
    cell = choose_cell(store, defense, attack)
    shown = gallery(store, data, cell, parse_epsilon(eps_text) if eps_text else None, count)
    draw_gallery(shown, out_path)
    click.echo(f"wrote {out_path}: {shown.defense} x {shown.attack}, {len(shown.samples)} samples")


@main.command()
@click.argument("run_id", required=False)
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Where to write curves.csv and curves.png [default: the run directory].")
@results_dir_option()
def curve(run_id: str | None, out_dir: Path | None, results_dir: Path | None) -> None:
    """Accuracy against epsilon of a run (default: the latest), as a table, CSV and PNG.
    (Benign accuracy against rho_cw across hyperparameters, paper 003 Fig. 5: `advbench sweep`.)"""
    from ..report import build_report
    from ..report.plots import plot_curves
    from ..report.tables import curve_table
    from ..report.terminal import write_tables
    from ..store import RunStore, atomic_write_text, default_results_dir

    store = RunStore.open(Path(results_dir or default_results_dir()), run_id)
    if out_dir is None and not os.access(store.path, os.W_OK):
        raise AdvbenchError(f"run {store.run_id} is read-only here; write its curves elsewhere with --out DIR")
    built = build_report([store])
    out_dir = Path(out_dir or store.path)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "curves.csv", built.curves.to_csv(index=False))
    plot_curves(built, out_dir / "curves.png")
    write_tables([curve_table(built)], sys.stdout)
    click.echo(f"wrote curves.csv and curves.png to {out_dir}", err=True)
