"""The read model computes each cell's outcomes at each epsilon once, whatever views ask."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import advbench.read_model as read_model
from advbench.contract import AttackKind, CellRole
from advbench.norms import Norm
from advbench.read_model import Run
from advbench.report import report_of


def random_run(seed: int = 0, defenses: int = 3, samples: int = 40) -> pd.DataFrame:
    """Fixed-epsilon and minimum-norm cells of two norms for a few defenses, random outcomes."""
    rng = np.random.default_rng(seed)
    frames = []
    for d in range(defenses):
        labels = rng.integers(0, 10, samples)
        clean = np.where(rng.random(samples) < 0.9, labels, (labels + 1) % 10)
        for attack, kind, norm, epsilons in (("fgsm", "fixed-epsilon", "linf", [0.1, 0.2]),
                                             ("pgd", "fixed-epsilon", "linf", [0.1, 0.3]),
                                             ("fmn", "minimum-norm", "linf", [math.nan]),
                                             ("pgd-l2", "fixed-epsilon", "l2", [1.0])):
            for eps in epsilons:
                size = rng.random(samples) * (0.4 if norm == "linf" else 3.0)
                wrong = rng.random(samples) < (0.5 if math.isnan(eps) else eps * 2)
                frames.append(pd.DataFrame({
                    "cell": f"d{d}__{attack}", "defense": f"d{d}", "attack": attack, "norm": norm, "kind": kind,
                    "epsilon": eps, "sample": np.arange(samples), "label": labels, "clean_pred": clean,
                    "clean_score": rng.random(samples), "adv_pred": np.where(wrong, (labels + 2) % 10, clean),
                    "adv_score": rng.random(samples), "l2": size * 5, "linf": size, "x_l2": 6.0, "seconds": 0.1,
                    "queries": 3.0, "access": "gradient", "grad_norm": 1.0}))
    return pd.concat(frames, ignore_index=True)


def test_a_report_reads_each_cell_at_each_epsilon_once(monkeypatch):
    """Issue 21: the demo report called `outcomes_at` 7,337 times for about 240 distinct
    (cell, epsilon) pairs; now every view reads the read model's one copy."""
    calls: list[tuple[str, float]] = []
    real = read_model.outcomes_at

    def counted(cell, eps):
        calls.append((cell.id, float(eps)))
        return real(cell, eps)

    monkeypatch.setattr(read_model, "outcomes_at", counted)
    run = Run.from_records(random_run(), {f"d{d}__fmn": [0.05, 0.2] for d in range(3)})
    report = report_of(run)
    assert len(calls) == len(set(calls)) > 0
    assert not report.summary.empty and not report.mcnemar.empty and not report.curves.empty


def test_cells_are_typed_at_the_boundary():
    run = Run.from_records(random_run(defenses=1), {"d0__fmn": [0.05]})
    cell = run.cells["d0__fmn"]
    assert cell.norm is Norm.LINF and cell.kind is AttackKind.MINIMUM_NORM and cell.role is CellRole.EVALUATED
    assert cell.epsilons == [0.05, math.inf]
    assert run.cells["d0__pgd"].epsilons == [0.1, 0.3]
    assert [c.attack for c in run.groups[("d0", Norm.LINF)]] == ["fgsm", "pgd", "fmn"]


def test_outcomes_at_an_epsilon_a_fixed_cell_never_ran_name_the_cell():
    run = Run.from_records(random_run(defenses=1))
    with pytest.raises(KeyError, match="d0__pgd was not run at epsilon 0.2"):
        run.outcomes(run.cells["d0__pgd"], 0.2)
