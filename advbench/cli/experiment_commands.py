"""The papers' own experiments beside the grid: GAT's `detectors` table, `targeted` examples and
paper 003's hyperparameter `sweep`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..settings import DEFAULT_DATASET, Paths
from .app import main
from .options import path_options, terminal_observer


@main.command()
@click.argument("model", default="gat")
@click.option("--dataset", default=DEFAULT_DATASET, show_default=True)
@click.option("--config", "configs", multiple=True, metavar="NORM:EPS:STEPS:STEP[:RESTARTS[:RULE]]",
              help="An attack configuration (repeatable) [default: the model's training attack with 100 steps, "
                   "and 500 steps of half the size with 5 restarts].")
@click.option("--samples", type=int, default=200, show_default=True, help="Attacked out-of-class inputs per detector.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--out", "out_path", type=click.Path(path_type=Path), default=None, help="Also write the table as CSV.")
@path_options(results=False)
def detectors(model: str, dataset: str, configs: tuple[str, ...], samples: int, seed: int, device: str,
              out_path: Path | None, paths: Paths) -> None:
    """Robustness of a GAT model's detectors: AUC per detector under detector attacks (paper 001 Table 2 shape)."""
    from ..data import load_dataset
    from ..experiments.detector_eval import DetectorAttack, default_detector_attacks, detector_auc_table
    from ..report.tables import number
    from ..report.terminal import TextTable, write_tables
    from ..run.device import pick_device
    from ..store import atomic_write_text
    from ..defense_loading import resolve_defense

    data = load_dataset(dataset, paths.data_dir, paths.download)
    torch_device = pick_device(device)
    defense = resolve_defense(model, data, zoo_dir=paths.zoo_dir, device=torch_device, observer=terminal_observer(),
                              train_if_missing=True)
    parsed = [DetectorAttack.parse(c) for c in configs] if configs else default_detector_attacks(defense)
    table = detector_auc_table(defense, data, parsed, samples=samples, seed=seed, device=torch_device,
                               observer=terminal_observer())
    header = list(table.columns)
    rows = [[str(r["attack"]), *[number(float(r[c])) for c in header[1:]]] for _, r in table.iterrows()]
    write_tables([TextTable(f"AUC per detector of {model} (clean in-class vs attacked out-of-class)", header, rows)],
                 sys.stdout)
    if out_path is not None:
        atomic_write_text(out_path, table.to_csv(index=False))


@main.command()
@click.argument("models", nargs=-1)
@click.option("--dataset", default=DEFAULT_DATASET, show_default=True)
@click.option("--eps", "eps_text", default="0.3", show_default=True, help="Perturbation budget (0-1 scale).")
@click.option("--norm", default="linf", show_default=True)
@click.option("--steps", type=int, default=100, show_default=True)
@click.option("--per-class", type=int, default=3, show_default=True, help="Inputs shown per target class.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "out_path", type=click.Path(path_type=Path), default=Path("targeted.png"), show_default=True)
@path_options(results=False)
def targeted(models: tuple[str, ...], dataset: str, eps_text: str, norm: str, steps: int, per_class: int, seed: int,
             out_path: Path, paths: Paths) -> None:
    """Targeted examples per class, clean beside perturbed (paper 000 Fig. 4) [default models: gat, and pgd-at
    when the zoo has it]."""
    from ..data import load_dataset
    from ..experiments.targeted import default_models, targeted_grid
    from ..norms import parse_epsilon, parse_norm
    from ..report.plots import plot_image_grid
    from ..defense_loading import resolve_defense

    data = load_dataset(dataset, paths.data_dir, paths.download)
    eps, parsed_norm = parse_epsilon(eps_text), parse_norm(norm)
    loaded = {spec: resolve_defense(spec, data, zoo_dir=paths.zoo_dir, observer=terminal_observer(),
                                    train_if_missing=True).gradient_model()
              for spec in models or default_models(paths.zoo_dir, dataset)}
    images, titles = targeted_grid(loaded, data.test_x, data.test_y, data.info.num_classes, per_class=per_class,
                                   eps=eps, norm=parsed_norm, steps=steps, bounds=data.info.bounds, seed=seed)
    plot_image_grid(images, titles, out_path, f"targeted {parsed_norm} eps {eps:g}, {steps} steps")
    click.echo(f"wrote {out_path}", err=True)


@main.command()
@click.option("--defense", "sweep_defenses", multiple=True, required=True,
              help="A defense to train at each --param value (repeatable, paired with --param).")
@click.option("--param", "sweep_params", multiple=True, required=True, metavar="NAME=V1,V2,...",
              help="The hyperparameter values for the matching --defense.")
@click.option("--dataset", default=DEFAULT_DATASET, show_default=True)
@click.option("--samples", type=int, default=200, show_default=True, help="Test samples attacked.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--batch-size", type=int, default=100, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--train-opt", "train_opts", multiple=True, metavar="KEY=VALUE",
              help="A training hyperparameter for every model (e.g. epochs=5).")
@click.option("--attack-opt", "attack_opts", multiple=True, metavar="KEY=VALUE",
              help="A cw-l2 option (e.g. steps=50).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Where to write the CSV and PNG [default: the sweep's run directory].")
@path_options()
def sweep(sweep_defenses: tuple[str, ...], sweep_params: tuple[str, ...], dataset: str, samples: int, seed: int,
          batch_size: int, device: str, train_opts: tuple[str, ...], attack_opts: tuple[str, ...],
          out_dir: Path | None, paths: Paths) -> None:
    """Benign accuracy against rho_cw across hyperparameters (paper 003 Fig. 5), e.g.
    `advbench sweep --defense pgd-at --param eps=0.05,0.1 --defense pgn --param c-l=0.25,0.5`."""
    from ..data import load_dataset
    from ..experiments.sweep import plan_sweep, plot_sweep, run_sweep, sweep_table
    from ..options import parse_assignments
    from ..report.terminal import write_tables
    from ..store import atomic_write_text

    points = plan_sweep(list(sweep_defenses), list(sweep_params))
    data = load_dataset(dataset, paths.data_dir, paths.download)
    table, store = run_sweep(points, data, samples=samples, seed=seed, batch_size=batch_size, paths=paths,
                             train_options=parse_assignments(train_opts),
                             attack_options=parse_assignments(attack_opts), device=device,
                             observer=terminal_observer())
    out_dir = Path(out_dir or store.path)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "robustness_curve.csv", table.to_csv(index=False))
    plot_sweep(table, out_dir / "robustness_curve.png")
    write_tables([sweep_table(table)], sys.stdout)
    click.echo(f"wrote robustness_curve.csv and robustness_curve.png to {out_dir}", err=True)
