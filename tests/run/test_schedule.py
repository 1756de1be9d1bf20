"""The schedule: one pure decision per cell, which both executors carry out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from advbench.config import grid_from_dict
from advbench.contract import CellChecksum
from advbench.reuse import EarlierCell
from advbench.run import Paths, plan_grid, prepare
from advbench.run.manifest import build_manifest
from advbench.run.schedule import Action, DefenseFacts, schedule
from advbench.store import RunStore

REPO_ZOO = Path(__file__).parents[2] / "zoo"  # the shipped zoo: cnn-digits, fgsm-at-digits, ...
GRID = {"samples": 10, "sanity": False, "defenses": ["cnn", "fgsm-at"],
        "attacks": [{"name": name, "epsilons": [0.1], **({"steps": 2} if name in ("pgd-linf", "mim", "apgd-ce") else {})} for name in ("fgsm", "pgd-linf", "mim", "fgm", "apgd-ce")]}


@pytest.fixture
def plan(digits):
    return plan_grid(grid_from_dict(GRID), digits, Paths(zoo_dir=REPO_ZOO))


def _earlier(tmp_path, cell) -> EarlierCell:
    return EarlierCell(RunStore(tmp_path / "20260101-000000-abcdef"), cell.id, CellChecksum("0" * 64, 10), None,
                       cell.info)


def test_each_cell_gets_the_decision_its_facts_call_for(plan, tmp_path):
    manifest = build_manifest(plan)
    cnn = [cell.id for cell in plan.defenses[0].cells]
    manifest.finished[cnn[0]] = CellChecksum("1" * 64, 10)
    manifest.skipped[cnn[1]] = "not for this defense"
    facts = {"cnn": DefenseFacts(unsupported={cnn[2]: "needs a reject option"}, errors={cnn[3]: "no source"},
                                 earlier={cnn[4]: _earlier(tmp_path, plan.defenses[0].cells[4])}),
             "fgsm-at": DefenseFacts(refused="defense fgsm-at gives outputs of shape (10, 5)")}
    before = json.dumps(manifest.to_json(), sort_keys=True)
    jobs = schedule(manifest, plan, facts)
    assert [job.id for job in jobs] == [cell.id for cell in plan.cells]  # the plan's order
    assert [job.action for job in jobs[:5]] == [Action.DONE, Action.DONE, Action.SKIP, Action.REFUSE, Action.REUSE]
    assert jobs[2].reason == "needs a reject option" and jobs[3].reason == "no source"
    assert jobs[4].earlier is facts["cnn"].earlier[cnn[4]] and "20260101-000000-abcdef" in jobs[4].reason
    assert {job.action for job in jobs[5:]} == {Action.REFUSE}
    assert all("outputs of shape" in job.reason for job in jobs[5:])
    assert json.dumps(manifest.to_json(), sort_keys=True) == before  # deciding changes nothing
    assert schedule(manifest, plan, facts) == jobs


def test_cells_without_facts_run(plan):
    jobs = schedule(build_manifest(plan), plan, {})
    assert {job.action for job in jobs} == {Action.RUN} and len(jobs) == 10


def test_the_plan_parses_each_defense_spec_once(digits, tmp_path, monkeypatch):
    from advbench.specs import DefenseRef

    parsed: list[str] = []
    original = DefenseRef.parse.__func__

    def counting(cls, spec):
        parsed.append(spec)
        return original(cls, spec)

    monkeypatch.setattr(DefenseRef, "parse", classmethod(counting))
    grid = grid_from_dict(GRID)
    parsed.clear()  # validating the grid parsed each spec once; the plan and the run parse none again
    from advbench.run import run_grid

    store = RunStore.create(tmp_path, grid.fingerprint())
    plan = plan_grid(grid, digits, Paths(zoo_dir=REPO_ZOO))
    run_grid(grid, digits, store, plan=plan, zoo_dir=REPO_ZOO)
    assert parsed == []
    assert len(store.manifest().finished) == 10


def test_prepare_builds_each_attack_once(monkeypatch):
    """Review spot 3: attacks were built three times before anything ran (for the sanity attacks'
    norms, for RobustBench threats, for the cells); now once per distinct name and options."""
    import advbench.run.plan as plan_module

    built: list[str] = []
    original = plan_module.make_attack

    def counting(name, options):
        built.append(name)
        return original(name, options)

    monkeypatch.setattr(plan_module, "make_attack", counting)
    grid = grid_from_dict({"samples": 20, "defenses": ["cnn", "fgsm-at"],
                           "attacks": [{"name": "fgsm", "epsilons": [0.1]}, {"name": "pgd-l2", "epsilons": [1.0]},
                                       {"name": "fgsm", "label": "fgsm-again", "epsilons": [0.2]}]})
    plan = prepare(grid, Paths(zoo_dir=REPO_ZOO))
    assert sorted(built) == sorted(set(built))  # the sanity attacks included, nothing built twice
    assert {"fgsm", "pgd-l2", "square", "square-l2"} <= set(built)
    assert len(plan.cells) == 2 * len(plan.grid.attacks)
