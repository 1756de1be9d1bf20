"""The library call for a model in your notebook: `benchmark(model, x, y, attacks=..., epsilons=...)`.

It wraps the in-memory `torch.nn.Module` and data as a one-defense grid and runs the same front
door as the CLI (`evaluation.evaluate`): the same validation, verification of every example,
sanity attacks, flags and statistics, a run directory (or a temporary one), and a typed result
with the headline and every table as pandas DataFrames.

    >>> result = benchmark(model, x_test, y_test, attacks=["autoattack"], epsilons=[8 / 255])  # doctest: +SKIP
    >>> result.summary                                                                      # doctest: +SKIP

The module maps inputs on the data's bounds (default [0, 1]) to logits; put any normalisation
inside it. A reject option, randomness and EOT are declared by keyword, or by the module itself
(`reject_score(x, logits)`, `reject_threshold`, `stochastic`, `eot_samples`), or by passing an
advbench `Defense`. The module is moved to the device and put in eval mode.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch
from torch import nn

from .config import AttackSpec, DefenseSpec, Grid, validate
from .data import DataInfo, Dataset
from .defenses.base import Defense
from .errors import AdvbenchError
from .evaluation import Evaluation, evaluate
from .progress import Observer
from .settings import Paths, ReportOptions, RunOptions, View


class UserModel(Defense):
    """An in-memory module as a defense, with what it declares (or the caller declares for it)."""

    description = "an in-memory model (advbench.benchmark)"

    def __init__(self, model: nn.Module, *, reject_threshold: float | None = None, stochastic: bool | None = None,
                 eot: int | None = None) -> None:
        super().__init__()
        self.model = model
        self.reject_threshold = reject_threshold if reject_threshold is not None else getattr(
            model, "reject_threshold", None)
        self.stochastic = bool(stochastic if stochastic is not None else getattr(model, "stochastic", False))
        self.eot_samples = int(eot if eot is not None else getattr(model, "eot_samples", 1))
        if self.reject_threshold is not None and not callable(getattr(model, "reject_score", None)):
            raise AdvbenchError("a reject threshold needs a reject score: give the module a "
                                "reject_score(x, logits) method")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def reject_score(self, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor | None:
        score = getattr(self.model, "reject_score", None)
        return score(x, logits) if callable(score) and self.reject_threshold is not None else None


def as_defense(model: nn.Module, **declared: Any) -> Defense:
    """`model` as advbench sees it: an advbench `Defense` as it is, any other module wrapped."""
    if isinstance(model, Defense):
        if any(v is not None for v in declared.values()):
            raise AdvbenchError("the model is an advbench Defense: set reject_threshold, stochastic and eot_samples "
                                "on it, not as keywords")
        return model
    if not isinstance(model, nn.Module):
        raise AdvbenchError(f"benchmark needs a torch.nn.Module, got {type(model).__name__}")
    return UserModel(model, **declared)


def in_memory_dataset(x: torch.Tensor, y: torch.Tensor, num_classes: int,
                      bounds: tuple[float, float] = (0.0, 1.0)) -> Dataset:
    """Test inputs and labels as a dataset named by their content (so that runs on other data
    never share content keys), with no training split."""
    x, y = torch.as_tensor(x).detach().float().cpu(), torch.as_tensor(y).detach().long().cpu()
    if x.dim() < 2 or len(x) != len(y) or len(x) == 0:
        raise AdvbenchError(f"x must be a batch of inputs and y one label each (got {tuple(x.shape)} and "
                            f"{tuple(y.shape)})")
    low, high = bounds
    if x.min() < low or x.max() > high:
        raise AdvbenchError(f"inputs lie in [{float(x.min()):g}, {float(x.max()):g}], outside the bounds "
                            f"[{low:g}, {high:g}]: give bounds=, or put the normalisation inside the model")
    digest = hashlib.sha256(x.numpy().tobytes() + y.numpy().tobytes()).hexdigest()[:12]
    info = DataInfo(f"memory-{digest}", tuple(x.shape[1:]), num_classes, (float(low), float(high)))
    return Dataset(info, x[:0], y[:0], x, y)


def from_torch_dataset(dataset: torch.utils.data.Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """A torch `Dataset` of (input, label) pairs as two tensors."""
    pairs = [dataset[i] for i in range(len(dataset))]  # type: ignore[arg-type]
    return torch.stack([torch.as_tensor(p[0]) for p in pairs]), torch.as_tensor([int(p[1]) for p in pairs])


@dataclass
class BenchmarkResult:
    """What `benchmark` found: the evaluation (run directory, manifest) and its report."""

    evaluation: Evaluation
    kept: bool = True  # False: the run directory was temporary and is gone

    @property
    def report(self):  # -> advbench.report.Report
        if self.evaluation.report is None:
            raise AdvbenchError("no cell finished: nothing to report (see .failed)")
        return self.evaluation.report

    @property
    def run_id(self) -> str:
        return self.evaluation.store.run_id

    @property
    def summary(self) -> pd.DataFrame:
        return self.report.summary

    @property
    def tables(self) -> dict[str, pd.DataFrame]:
        return self.report.tables()

    @property
    def flags(self) -> pd.DataFrame:
        return self.report.flags

    @property
    def failed(self) -> dict[str, str]:
        return self.evaluation.failed

    @property
    def headline(self) -> list[str]:
        from .report.brief import headlines

        return headlines(self.report)

    def text(self, view: View | str = View.BRIEF) -> str:
        """The report as the CLI prints it (brief, paper or summary view)."""
        from .report import render

        out = io.StringIO()
        render(self.report, "table", out, view)
        text = out.getvalue()
        if not self.kept:  # the run directory is gone: point at the tables in memory instead
            text = "\n".join("Every table: result.text('paper'); as DataFrames: result.tables"
                             if line.startswith("Every table") else line for line in text.splitlines()) + "\n"
        return text


def _attack_specs(attacks: Sequence[str | tuple[str, dict[str, Any]]], epsilons: Sequence[float],
                  norm: str | None) -> tuple[AttackSpec, ...]:
    from .registry import attacks as registered

    specs = []
    for item in attacks:
        name, options = (item, {}) if isinstance(item, str) else (item[0], dict(item[1]))
        if norm is not None and "norm" not in options:
            entry = registered.entry(name)  # an unknown name fails here, with suggestions
            if "norm" not in dict(entry.preset) and "norm" in inspect.signature(entry.obj.__init__).parameters:
                options["norm"] = norm
        specs.append(AttackSpec(name, tuple(float(e) for e in epsilons), tuple(sorted(options.items()))))
    return tuple(specs)


def benchmark(model: nn.Module, x: torch.Tensor | None = None, y: torch.Tensor | None = None, *,
              data: torch.utils.data.Dataset | None = None, attacks: Sequence[str | tuple[str, dict[str, Any]]] = (
                  "autoattack",), epsilons: Sequence[float] = (), norm: str | None = None,
              bounds: tuple[float, float] = (0.0, 1.0), num_classes: int | None = None, name: str = "model",
              reject_threshold: float | None = None, stochastic: bool | None = None, eot: int | None = None,
              samples: int | None = None, batch_size: int = 100, seed: int = 0, device: str = "auto",
              sanity: bool = True, results_dir: Path | None = None, keep: bool = True,
              observer: Observer | None = None, report: ReportOptions = ReportOptions()) -> BenchmarkResult:
    """Evaluate an in-memory model on in-memory data (`x`, `y` tensors or a torch `data` set)
    under `attacks` (names, or (name, options) pairs) at `epsilons`; `norm` sets the threat model
    of attacks that take one (e.g. autoattack). The run is written under `results_dir` (default:
    ./results); with `keep=False` it lives in a temporary directory, gone when the call returns
    (the result keeps every table in memory)."""
    if data is not None:
        if x is not None or y is not None:
            raise AdvbenchError("give either x and y or data, not both")
        x, y = from_torch_dataset(data)
    if x is None or y is None:
        raise AdvbenchError("benchmark needs test inputs and labels: x and y, or data")
    defense = as_defense(model, reject_threshold=reject_threshold, stochastic=stochastic, eot=eot)
    if num_classes is None:
        with torch.no_grad():
            probe = torch.as_tensor(x[:1]).float()
            num_classes = int(defense.to(probe.device).eval()(probe).shape[1])
    dataset = in_memory_dataset(x, y, num_classes, bounds)
    grid = validate(Grid((DefenseSpec(name),), _attack_specs(attacks, epsilons, norm), dataset=dataset.info.name,
                         samples=samples, batch_size=batch_size, seed=seed, device=device, sanity=sanity,
                         subset="first"))
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(results_dir) if keep and results_dir is not None else (
            None if keep else Path(scratch))
        result = evaluate(grid, paths=Paths(results_dir=directory), run=RunOptions(), report=report,
                          observer=observer, models={name: defense}, data=dataset, artifacts=keep)
    return BenchmarkResult(result, kept=keep)  # the report's tables are in memory already
