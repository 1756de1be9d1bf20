"""Commands about models: `list` the registry, `zoo list` the checkpoints, `train` one."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import AdvbenchError
from ..settings import DEFAULT_DATASET, Paths
from .app import main
from .options import path_options, terminal_observer


@main.command("list")
@click.argument("kind", required=False, type=click.Choice(["defenses", "attacks", "datasets"]))
@click.option("--params", is_flag=True, help="Also show each entry's hyperparameters and defaults.")
def list_command(kind: str | None, params: bool) -> None:
    """List defenses, attacks and datasets: built-in and from plugin packages."""
    from .. import registry
    from ..config import default_epsilon_text
    from ..options import describe_parameters

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
    from ..zoo import default_zoo_dir, list_entries

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
@click.option("--dataset", default=DEFAULT_DATASET, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--name", default=None, help="Zoo entry name [default: DEFENSE-DATASET].")
@click.option("--device", default="auto", show_default=True)
@click.option("--force", is_flag=True, help="Overwrite an existing zoo entry; discard an interrupted training of it "
              "that had other settings.")
@path_options(results=False)
@click.pass_context
def train(ctx: click.Context, defense: str, dataset: str, seed: int, name: str | None, device: str, force: bool,
          paths: Paths) -> None:
    """Train DEFENSE and store it in the zoo (checkpoint + JSON card).

    Any hyperparameter of the defense is an option: --epochs 20, --lr 1e-3, --norm linf,
    --eps 0.3, --steps 40, --quick ... (`advbench list defenses --params` shows them).
    """
    from .. import zoo
    from ..data import load_dataset
    from ..run.device import pick_device

    data = load_dataset(dataset, paths.data_dir, paths.download)
    card, reused = zoo.train_entry(defense, data, options=parse_extra_options(ctx.args), seed=seed, name=name,
                                   zoo_dir=paths.zoo_dir, device=pick_device(device), observer=terminal_observer(),
                                   force=force)
    target = Path(paths.zoo_dir or zoo.default_zoo_dir()) / f"{card.name}.pt"
    if reused:
        click.echo(f"{target} was already trained with these settings (clean accuracy "
                   f"{100 * card.clean_accuracy:.2f}%); pass --force to train it again")
        return
    click.echo(f"trained {card.name}: clean accuracy {100 * card.clean_accuracy:.2f}% "
               f"({card.train_seconds:.1f}s, {card.seconds_per_epoch:.2f}s/epoch) -> {target}")
