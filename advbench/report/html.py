"""`advbench report --format html`: one self-contained file with every table and every plot.

The plots are embedded as base64 PNG data URIs and the style sheet is inline, so the file
reads offline, attaches to an e-mail and opens years later without its run directory.
"""

from __future__ import annotations

import base64
import html
import tempfile
from pathlib import Path

from .. import __version__
from . import Report
from .tables import paper_tables
from .terminal import TextTable

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 80em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 0.3em; font-size: 0.9em; }
th, td { padding: 0.25em 0.7em; border-bottom: 1px solid #ddd; text-align: right; }
th { border-bottom: 2px solid #555; }
td.left, th.left { text-align: left; }
tr.section td { border-top: 2px solid #999; }
p.note { font-size: 0.85em; color: #555; max-width: 70em; }
p.notice { font-weight: bold; color: #a00; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
"""


def _table(table: TextTable) -> str:
    left, section = ' class="left"', ' class="section"'

    def cells(row: list[str], tag: str) -> str:
        return "".join(f"<{tag}{left if i < table.left_columns else ''}>{html.escape(c)}</{tag}>"
                       for i, c in enumerate(row))

    body = "".join(f"<tr{section if i in table.sections else ''}>{cells(row, 'td')}</tr>"
                   for i, row in enumerate(table.rows))
    note = f'<p class="note">{html.escape(table.note)}</p>' if table.note else ""
    return (f"<h2>{html.escape(table.title)}</h2><table><thead><tr>{cells(table.header, 'th')}</tr></thead>"
            f"<tbody>{body}</tbody></table>{note}")


def _image(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<figure><img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}"></figure>'


def html_report(report: Report, figures: list[Path] | None = None) -> str:
    """The whole report (notices, every paper table, every plot) as one HTML document; `figures`
    are PNGs already drawn for it (else they are drawn here)."""
    from .plots import write_plots

    if figures is not None:
        images = "".join(_image(p) for p in figures)
    else:
        with tempfile.TemporaryDirectory() as scratch:
            images = "".join(_image(p) for p in write_plots(report, Path(scratch)))
    notices = "".join(f'<p class="notice">{html.escape(n)}</p>' for n in report.notices)
    tables = "".join(_table(t) for t in paper_tables(report))
    title = f"advbench report: {', '.join(report.runs)}"
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<p class=\"note\">advbench {html.escape(__version__)}; every number is computed from the run's verified "
            f"per-sample records.</p>{notices}{tables}<h2>Plots</h2>{images}</body></html>\n")
