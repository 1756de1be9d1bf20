"""The LaTeX table a paper pastes: results only (no sanity rows), bold only on a row's single best,
reject-option columns marked; and sanity cells carry their role through the manifest and summary."""

from __future__ import annotations

import json

import pytest

from helpers import invoke


@pytest.fixture
def run_with_sanity(isolated):
    """cnn and cnn+detect (a reject option) under fgsm at 0.1 and at 1.0 (where both are at 0%),
    with the sanity attacks on."""
    grid = isolated / "g.toml"
    grid.write_text('samples = 30\ndefenses = ["cnn", "cnn+detect"]\n'
                    '[[attacks]]\nname = "fgsm"\nepsilons = [0.1, 1.0]\n')
    result = invoke("run", grid, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _latex_rows(tex: str) -> dict[str, list[str]]:
    return {line.split("&")[0].strip(): line.split("&")[1:] for line in tex.splitlines() if "&" in line}


def test_the_latex_table_leaves_out_sanity_rows_and_bolds_only_a_single_best(run_with_sanity):
    summary = run_with_sanity["summary"]
    assert {r["role"] for r in summary if r["attack"].startswith("sanity")} == {"sanity"}
    assert {r["role"] for r in summary if r["attack"] == "fgsm"} == {"evaluated"}
    tex = invoke("report", "--format", "latex").stdout
    assert "sanity" not in tex
    rows = _latex_rows(tex)
    tied = rows["fgsm (Linf), $\\epsilon=1$"]
    assert all("0.0" in cell for cell in tied) and not any("\\textbf" in cell for cell in tied)
    header = next(line for line in tex.splitlines() if line.startswith(" & "))
    assert "cnn+detect (r)" in header and "cnn (r)" not in header
    assert "(r) = reject option" in tex


def test_sanity_cells_have_their_role_in_the_manifest_and_stay_out_of_comparisons(run_with_sanity):
    from advbench.contract import CellRole
    from advbench.store import list_runs

    (store,) = list_runs(__import__("pathlib").Path("results"))
    roles = {cell.attack: cell.role for cell in store.manifest().cells}
    assert roles["fgsm"] is CellRole.EVALUATED
    assert {role for attack, role in roles.items() if attack.startswith("sanity")} == {CellRole.SANITY}
    compared = {row["attack"] for row in run_with_sanity.get("mcnemar", [])}
    assert compared and not any(attack.startswith("sanity") for attack in compared)
