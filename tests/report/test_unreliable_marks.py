"""A defense that is random without declaring it: every one of its numbers is marked unreliable,
in every table and format, never printed as an ordinary result."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest

from helpers import invoke

GRID = '''samples = 30
sanity = false
defenses = ["python:toys:secretly_random", "python:toys:honest"]

[[attacks]]
name = "fgsm"
epsilons = [0.1]

[[attacks]]
name = "autoattack"
epsilons = [0.1]
steps = 5
targets = 2
square_queries = 20
'''
RANDOM = "python:toys:secretly_random"
HONEST = "python:toys:honest"


@pytest.fixture(scope="module")
def random_run(tmp_path_factory):
    directory = tmp_path_factory.mktemp("unreliable")
    (directory / "grid.toml").write_text(GRID)
    result = invoke("run", directory / "grid.toml", "--format", "csv", "--results-dir", directory / "results")
    assert result.exit_code == 0, result.output
    return directory / "results"


def _report(results, fmt: str) -> str:
    result = invoke("report", "--format", fmt, "--results-dir", results)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_every_row_of_the_random_defense_is_unreliable_in_the_csv(random_run):
    summary = pd.read_csv(io.StringIO(_report(random_run, "csv")), keep_default_na=False)
    random_rows = summary[summary["defense"] == RANDOM]
    assert len(random_rows) >= 3  # fgsm, autoattack and the ALL worst case
    assert (random_rows["unreliable"] == "undeclared-randomness").all()
    assert (summary.loc[summary["defense"] == HONEST, "unreliable"] == "").all()


def test_the_terminal_table_prints_them_as_unreliable(random_run):
    table = _report(random_run, "table")
    accuracy = table.split("Accuracy in %")[1].split("\n\n")[0]
    lines = [line for line in accuracy.splitlines() if line.lstrip().startswith(("fgsm", "autoattack", "ALL"))]
    assert len(lines) == 3 and all("unreliable (" in line for line in lines), accuracy
    assert "a defense random without declaring it" in " ".join(table.split())  # the note, wrapped


def test_latex_marks_them_and_never_makes_them_the_best(random_run):
    latex = _report(random_run, "latex")
    rows = [line for line in latex.splitlines() if line.startswith(("fgsm", "autoattack", "ALL"))]
    assert rows
    for row in rows:
        random_cell = row.split(" & ")[1]
        assert random_cell.endswith(r"$^\dagger$") and r"\textbf" not in random_cell
    assert "unreliable" in latex


def test_robustbench_json_says_the_number_is_unreliable(random_run):
    entries = {e["name"]: e for e in json.loads(_report(random_run, "robustbench"))["entries"]}
    assert entries[RANDOM]["unreliable"] == "undeclared-randomness"
    assert entries[HONEST]["unreliable"] is None
