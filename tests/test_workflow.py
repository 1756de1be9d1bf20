"""Issue 14: the researcher's workflow around the numbers (runs that grow, saved adversarials,
paper-ready tables, the field's conventions)."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from advbench import runner
from advbench.cli import main
from advbench.store import list_runs


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _grid(path, attacks: list[tuple[str, list[float]]], extra: str = "") -> str:
    body = "".join(f'[[attacks]]\nname = "{name}"\nepsilons = {eps}\n' for name, eps in attacks)
    path.write_text(f'samples = 30\nsanity = false\ndefenses = ["cnn"]\n{extra}\n' + body)
    return str(path)


@pytest.fixture
def cells_run(monkeypatch):
    """The cell ids `run_cell` is called for (the work a run really does)."""
    calls: list[str] = []
    original = runner.run_cell

    def counting(plan, *args, **kwargs):
        calls.append(plan.id)
        return original(plan, *args, **kwargs)

    monkeypatch.setattr(runner, "run_cell", counting)
    return calls


# ----------------------------------------------------------------------------- runs that grow

def test_adding_an_attack_runs_only_its_cells(isolated, cells_run):
    first = invoke("run", _grid(isolated / "a.toml", [("fgsm", [0.1])]), "--format", "json")
    assert first.exit_code == 0, first.output
    assert cells_run == ["cnn__fgsm"]
    cells_run.clear()
    grown = invoke("run", _grid(isolated / "b.toml", [("fgsm", [0.1]), ("pgd-linf", [0.1])]), "--format", "json")
    assert grown.exit_code == 0, grown.output
    assert cells_run == ["cnn__pgd-linf"]  # fgsm came from the first run
    old, new = list_runs(isolated / "results")
    manifest = new.manifest()
    assert manifest.reused == {"cnn__fgsm": old.run_id}
    assert set(manifest.finished) == {"cnn__fgsm", "cnn__pgd-linf"}
    assert new.records().groupby("attack").size().to_dict() == {"fgsm": 30, "pgd-linf": 30}
    assert (new.record_path("cnn__fgsm").read_bytes() == old.record_path("cnn__fgsm").read_bytes())
    cells_run.clear()
    fresh = invoke("run", _grid(isolated / "b.toml", [("fgsm", [0.1]), ("pgd-linf", [0.1])]), "--fresh")
    assert fresh.exit_code == 0, fresh.output
    assert cells_run == ["cnn__fgsm", "cnn__pgd-linf"]


def test_changed_settings_or_samples_are_not_reused(isolated, cells_run):
    assert invoke("run", _grid(isolated / "a.toml", [("pgd-linf", [0.1])])).exit_code == 0
    cells_run.clear()
    more_steps = isolated / "b.toml"
    _grid(more_steps, [("pgd-linf", [0.1])])
    more_steps.write_text(more_steps.read_text().replace("epsilons", "steps = 3\nepsilons"))
    assert invoke("run", more_steps).exit_code == 0
    assert cells_run == ["cnn__pgd-linf"]
    cells_run.clear()
    assert invoke("run", _grid(isolated / "a.toml", [("pgd-linf", [0.1])]), "--samples", "31").exit_code == 0
    assert cells_run == ["cnn__pgd-linf"]
    cells_run.clear()
    assert invoke("run", _grid(isolated / "a.toml", [("pgd-linf", [0.1])]), "--seed", "1").exit_code == 0
    assert cells_run == ["cnn__pgd-linf"]


def test_a_damaged_earlier_cell_is_recomputed_not_copied(isolated, cells_run):
    assert invoke("run", _grid(isolated / "a.toml", [("fgsm", [0.1])])).exit_code == 0
    (earlier,) = list_runs(isolated / "results")
    path = earlier.record_path("cnn__fgsm")
    path.write_text(path.read_text().replace(",1,", ",2,", 1))
    cells_run.clear()
    assert invoke("run", _grid(isolated / "a.toml", [("fgsm", [0.1])])).exit_code == 0
    assert cells_run == ["cnn__fgsm"]
    assert list_runs(isolated / "results")[-1].manifest().reused == {}
