"""The brief view `run` and `attack` print: the story on one screen (issue 22: the demo printed
753 lines of 125 columns and no headline)."""

from __future__ import annotations

import io

from advbench.read_model import Run
from advbench.report import render, report_of
from toys import many_attacks_run


def brief_of(defenses: int, attacks: int) -> str:
    run = Run.from_records(many_attacks_run(defenses, attacks), {f"d{d}__a{attacks}": [0.1, 0.2]
                                                                 for d in range(defenses)})
    out = io.StringIO()
    render(report_of(run, runs=["20261201-000000-abcdef"]), "table", out, "brief")
    return out.getvalue()


def test_the_brief_view_fits_one_screen_however_many_attacks():
    for attacks in (3, 12):
        text = brief_of(5, attacks)
        lines = text.splitlines()
        assert len(lines) <= 60 and max(len(line) for line in lines) <= 100, (attacks, len(lines))


def test_the_headline_names_each_defense_at_one_epsilon_strongest_first():
    text = brief_of(3, 3)
    headline = text.splitlines()[0]
    assert headline.startswith("Linf eps 0.1, worst case over the attacks: ")
    shares = [float(part.rsplit(" ", 1)[1].rstrip("%,")) for part in headline.split(": ", 1)[1].split(", ")]
    assert shares == sorted(shares, reverse=True) and len(shares) == 3
    assert "advbench report 20261201-000000-abcdef" in text
