"""What a user chooses for a run and its report, as frozen option objects with their choices.

The CLI builds these from its flags (one decorator each, `advbench.cli.options`) and a notebook
user builds them by hand; both pass them to `advbench.evaluate()`. Defaults live here only.
No heavy imports: `advbench --help` reads the choices.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path

DEFAULT_DATASET = "digits"  # shipped with advbench: needs no network
DEFAULT_ALPHA = 0.01  # significance level of the McNemar tests
DEFAULT_FALSE_ALARM = 0.05  # clean-input false-alarm rate for reject-option detection rates


class Format(str, Enum):
    TABLE = "table"
    CSV = "csv"
    JSON = "json"
    MARKDOWN = "markdown"
    LATEX = "latex"  # booktabs accuracy table
    HTML = "html"  # one self-contained file: every table and plot
    ROBUSTBENCH = "robustbench"  # RobustBench-style JSON entries (clean and AutoAttack accuracy)


class View(str, Enum):
    PAPER = "paper"      # rows clean / attacks / ALL, columns defenses, plus comparisons
    SUMMARY = "summary"  # one row per defense x attack x epsilon with every metric
    BRIEF = "brief"      # the story on one screen: headlines, each defense's worst case, the checks


class Executor(str, Enum):
    LOCAL = "local"
    RAY = "ray"  # cells split into sample shards as Ray tasks


@dataclass(frozen=True)
class Paths:
    """Where results, checkpoints, datasets and RobustBench models live (None: the defaults)."""

    results_dir: Path | None = None
    zoo_dir: Path | None = None
    data_dir: Path | None = None
    download: bool = False
    model_dir: Path | None = None  # RobustBench checkpoints


@dataclass(frozen=True)
class RunOptions:
    """How to run a grid: resume the latest run of it, stop at the first failed cell, recompute
    cells an earlier run holds (`fresh`), and on which executor."""

    resume: bool = False
    fail_fast: bool = False
    fresh: bool = False
    executor: Executor = Executor.LOCAL
    address: str | None = None  # Ray cluster
    shard_size: int = 0  # samples per Ray task; 0: one batch


@dataclass(frozen=True)
class ReportOptions:
    """How to report: the output format and view, and the statistics' settings."""

    fmt: Format = Format.TABLE
    view: View = View.PAPER
    alpha: float = DEFAULT_ALPHA
    holm: bool = True
    false_alarm: float = DEFAULT_FALSE_ALARM
