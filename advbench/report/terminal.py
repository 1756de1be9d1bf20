"""Writing titled text tables: rich on a terminal, aligned plain text elsewhere, or markdown."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from typing import TextIO


NOTE_WIDTH = 100  # plain-text notes wrap here, so reports read in a narrow terminal or an e-mail
PLAIN_WIDTH = 120  # plain-text tables wider than this are folded into blocks of columns


@dataclass
class TextTable:
    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""
    left_columns: int = 1
    sections: list[int] = field(default_factory=list)  # row indices that start a new section


def write_tables(tables: list[TextTable], out: TextIO, *, markdown: bool = False) -> None:
    rich = not markdown and hasattr(out, "isatty") and out.isatty()
    for i, table in enumerate(tables):
        if i:
            out.write("\n")
        if markdown:
            _markdown(table, out)
        elif rich:
            _rich(table, out)
        else:
            _plain(table, out)


def _markdown(table: TextTable, out: TextIO) -> None:
    out.write(f"### {table.title}\n\n")
    out.write("| " + " | ".join(table.header) + " |\n")
    out.write("|" + "|".join("---" if i < table.left_columns else "---:" for i in range(len(table.header))) + "|\n")
    for row in table.rows:
        out.write("| " + " | ".join(row) + " |\n")
    if table.note:
        out.write(f"\n{table.note}\n")


def _plain(table: TextTable, out: TextIO) -> None:
    """Aligned text; a table wider than PLAIN_WIDTH is folded into blocks of its columns, each
    repeating the left (label) columns, so reports read in a narrow terminal or an e-mail."""
    out.write(f"{table.title}\n")
    widths = [max([len(h), *(len(r[i]) for r in table.rows)]) for i, h in enumerate(table.header)]
    left = list(range(table.left_columns))
    blocks: list[list[int]] = [[]]
    used = sum(widths[i] + 2 for i in left)
    for i in range(table.left_columns, len(widths)):
        if blocks[-1] and used + widths[i] + 2 > PLAIN_WIDTH:
            blocks.append([])
            used = sum(widths[j] + 2 for j in left)
        blocks[-1].append(i)
        used += widths[i] + 2

    def line(cells: list[str], columns: list[int]) -> str:
        return "  ".join(cells[i].ljust(widths[i]) if i < table.left_columns else cells[i].rjust(widths[i])
                         for i in columns).rstrip()

    for n, block in enumerate(blocks):
        columns = left + block
        if n:
            out.write("\n")
        out.write(line(table.header, columns) + "\n")
        for row in table.rows:
            out.write(line(row, columns) + "\n")
    if table.note:
        out.write(textwrap.fill(table.note, width=NOTE_WIDTH) + "\n")


def _rich(table: TextTable, out: TextIO) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=out)
    rich_table = Table(title=table.title, header_style="bold", caption=table.note or None)
    for i, name in enumerate(table.header):
        rich_table.add_column(name, justify="left" if i < table.left_columns else "right", no_wrap=i < table.left_columns)
    for i, row in enumerate(table.rows):
        if i in table.sections:
            rich_table.add_section()
        rich_table.add_row(*row)
    console.print(rich_table)
