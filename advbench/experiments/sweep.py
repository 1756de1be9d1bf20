"""Robustness curves across hyperparameters (paper 003 Fig. 5).

For each defense and each value of one of its hyperparameters, a model is trained (or
reused from the zoo), attacked with a minimum-norm attack (`cw-l2`), and placed at
(benign accuracy, rho_cw = mean L2 of successful examples). A curve further up and to
the right is a better defense at every benign accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from .. import zoo
from ..config import AttackSpec, DefenseSpec, Grid, validate
from ..data import Dataset
from ..errors import AdvbenchError
from ..evaluation import evaluate
from ..settings import Paths, RunOptions
from ..options import coerce_options, parse_assignments
from ..progress import Observer
from ..registry import defenses
from ..run.device import pick_device
from ..store import RunStore

SWEEP_COLUMNS = ["defense", "parameter", "value", "model", "benign_accuracy", "rho_cw", "median_l2", "success_rate",
                 "seconds_per_epoch"]


@dataclass(frozen=True)
class SweepPoint:
    defense: str
    parameter: str
    value: str

    def model_name(self, dataset: str) -> str:
        return zoo.check_name(zoo.default_name(self.defense, dataset, {self.parameter: self.value}))


def plan_sweep(defense_names: list[str], params: list[str]) -> list[SweepPoint]:
    """Pair each --defense with its --param `name=v1,v2,...`, checking names and values early."""
    if len(defense_names) != len(params):
        raise AdvbenchError(f"give one --param per --defense ({len(defense_names)} defenses, {len(params)} params)")
    points = []
    for defense, param in zip(defense_names, params):
        ((key, values),) = parse_assignments([param]).items()  # the one key=value grammar; the value: v1,v2
        if not values:
            raise AdvbenchError(f"--param {param!r} must look like name=value1,value2")
        cls = defenses.get(defense)
        if not hasattr(cls, "Config"):
            raise AdvbenchError(f"defense {defense} has no hyperparameters to sweep")
        for value in (v.strip() for v in values.split(",")):
            coerce_options(cls.Config, {key: value}, f"defense {defense}")
            points.append(SweepPoint(defense, key, value))
    return points


def run_sweep(points: list[SweepPoint], data: Dataset, *, samples: int, seed: int, batch_size: int,
              paths: Paths, train_options: dict[str, Any], attack_options: dict[str, Any], device: str,
              observer: Observer) -> tuple[pd.DataFrame, RunStore]:
    """Train (or reuse) one model per sweep point, attack them all with cw-l2 through the front
    door (resuming an earlier run of the same sweep), and tabulate benign accuracy vs rho_cw."""
    zoo_dir = Path(paths.zoo_dir or zoo.default_zoo_dir())
    for point in points:
        name = point.model_name(data.info.name)
        if (zoo_dir / f"{name}.pt").exists():
            observer.message(f"reusing zoo entry {name}")
            continue
        observer.message(f"training {name}")
        zoo.train(point.defense, data, options={**train_options, point.parameter: point.value}, seed=seed,
                  name=name, zoo_dir=zoo_dir, device=pick_device(device), observer=observer)
    names = [p.model_name(data.info.name) for p in points]
    grid = validate(Grid(
        defenses=tuple(DefenseSpec(n) for n in names),
        attacks=(AttackSpec("cw-l2", options=tuple(sorted(attack_options.items()))),),
        dataset=data.info.name, samples=samples, batch_size=batch_size, seed=seed, device=device,
    ))
    result = evaluate(grid, paths=replace(paths, zoo_dir=zoo_dir), run=RunOptions(resume=True), observer=observer,
                      artifacts=False)
    if result.report is None:
        raise AdvbenchError(f"the sweep's cw-l2 cells all failed: {result.failed}")
    summary = result.report.summary
    summary = summary[summary["epsilon"] == float("inf")].set_index("defense")  # unbounded: every example found
    rows = []
    for point, name in zip(points, names):
        card = zoo.read_card(name, zoo_dir)
        row = summary.loc[name]
        rows.append({"defense": point.defense, "parameter": point.parameter.replace("_", "-"), "value": point.value,
                     "model": name, "benign_accuracy": card.clean_accuracy, "rho_cw": row["mean_l2"],
                     "median_l2": row["median_l2"], "success_rate": row["success_rate"],
                     "seconds_per_epoch": card.seconds_per_epoch})
    return pd.DataFrame(rows, columns=SWEEP_COLUMNS), result.store


def sweep_table(table: pd.DataFrame):
    """The terminal table of a sweep."""
    from ..report.tables import number, percent
    from ..report.terminal import TextTable

    rows = [[r.defense, f"{r.parameter}={r.value}", percent(r.benign_accuracy), number(r.rho_cw),
             number(r.median_l2), number(r.seconds_per_epoch, 3)] for r in table.itertuples()]
    return TextTable("Robustness curve: benign accuracy vs rho_cw (cw-l2)",
                     ["defense", "setting", "benign acc", "rho_cw", "median L2", "s/epoch"], rows, left_columns=2)


def plot_sweep(table: pd.DataFrame, path: Path) -> Path:
    """One line per defense: x benign accuracy, y rho_cw, points labelled with their value."""
    from ..report.plots import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for defense, rows in table.groupby("defense", sort=False):
        rows = rows.sort_values("benign_accuracy")
        ax.plot(100 * rows["benign_accuracy"], rows["rho_cw"], marker="o", label=f"{defense} ({rows['parameter'].iloc[0]})")
        for r in rows.itertuples():
            ax.annotate(r.value, (100 * r.benign_accuracy, r.rho_cw), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
    ax.set_xlabel("benign accuracy (%)")
    ax.set_ylabel("rho_cw: mean L2 of successful cw-l2 examples")
    ax.set_title("Robustness curve across hyperparameters")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    path = save_figure(fig, path)
    plt.close(fig)
    return path
