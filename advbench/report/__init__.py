"""Output formats for summaries: one renderer per format, picked from an enum."""

from __future__ import annotations

import json
import math
from enum import Enum
from typing import Callable, TextIO

import pandas as pd


class Format(str, Enum):
    TABLE = "table"
    CSV = "csv"
    JSON = "json"
    MARKDOWN = "markdown"


DISPLAY_COLUMNS = {
    "defense": "defense", "attack": "attack", "norm": "norm", "epsilon": "eps", "samples": "n",
    "clean_accuracy": "clean acc", "robust_accuracy": "robust acc", "success_rate": "success",
    "mean_l2": "mean L2", "median_l2": "median L2", "rho": "rho", "seconds_per_sample": "s/sample",
}
PERCENT = {"clean_accuracy", "robust_accuracy", "success_rate"}


def _cell(column: str, value: object) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if math.isinf(value):
            return "unbounded" if column == "epsilon" else "inf"
        if column in PERCENT:
            return f"{100 * value:.1f}%"
        return f"{value:.4g}"
    return str(value)


def display_rows(summary: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Human-facing subset of the summary with formatted numbers (shared by table and markdown)."""
    columns = [c for c in DISPLAY_COLUMNS if c in summary.columns]
    rows = [[_cell(c, row[c]) for c in columns] for _, row in summary.iterrows()]
    return [DISPLAY_COLUMNS[c] for c in columns], rows


def render_csv(summary: pd.DataFrame, out: TextIO) -> None:
    summary.to_csv(out, index=False)


def _json_value(value: object) -> object:
    """Strict JSON: NaN (no value) becomes null and infinity the string "inf"."""
    if hasattr(value, "item"):
        value = value.item()  # numpy scalar
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def render_json(summary: pd.DataFrame, out: TextIO) -> None:
    rows = [{k: _json_value(v) for k, v in row.items()} for row in summary.to_dict(orient="records")]
    json.dump(rows, out, indent=2)
    out.write("\n")


def render_markdown(summary: pd.DataFrame, out: TextIO) -> None:
    header, rows = display_rows(summary)
    out.write("| " + " | ".join(header) + " |\n")
    out.write("|" + "|".join("---" for _ in header) + "|\n")
    for row in rows:
        out.write("| " + " | ".join(row) + " |\n")


def render_table(summary: pd.DataFrame, out: TextIO) -> None:
    from .table import render_table as rich_table

    rich_table(summary, out)


RENDERERS: dict[Format, Callable[[pd.DataFrame, TextIO], None]] = {
    Format.TABLE: render_table, Format.CSV: render_csv, Format.JSON: render_json, Format.MARKDOWN: render_markdown,
}


def render(summary: pd.DataFrame, fmt: Format | str, out: TextIO) -> None:
    RENDERERS[Format(fmt)](summary, out)
