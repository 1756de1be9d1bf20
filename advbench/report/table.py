"""The terminal table: rich on a terminal, aligned plain text everywhere else."""

from __future__ import annotations

from typing import TextIO

import pandas as pd

from . import display_rows


def render_table(summary: pd.DataFrame, out: TextIO) -> None:
    header, rows = display_rows(summary)
    if hasattr(out, "isatty") and out.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(title="advbench results", header_style="bold")
        for name in header:
            table.add_column(name, justify="left" if name in {"defense", "attack", "norm"} else "right")
        previous = None
        for row in rows:
            key = tuple(row[:2])
            if previous is not None and key != previous:
                table.add_section()
            table.add_row(*row)
            previous = key
        Console(file=out).print(table)
        return
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    out.write("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip() + "\n")
    for row in rows:
        out.write("  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip() + "\n")
