"""Bad input from a careless or hostile user: one specific line and a non-zero exit, never a
generic `error: TypeError` or a silent exit; and labels that look like numbers stay labels."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import pandas as pd
import pytest

from advbench.attacks.base import MinimumNormAttack
from advbench.norms import Norm
from advbench.registry import attacks
from helpers import invoke, one_line_error

REPO_ZOO = Path(__file__).parents[2] / "zoo"
FGSM = '[[attacks]]\nname = "fgsm"\nepsilons = [0.1]\n'


@pytest.mark.parametrize("text, expected", [
    ('dataset = 5\ndefenses = ["cnn"]\n' + FGSM, "dataset must be a name"),
    ('samples = true\ndefenses = ["cnn"]\n' + FGSM, "samples must be a positive integer"),
    ('batch_size = true\ndefenses = ["cnn"]\n' + FGSM, "batch size must be a positive integer"),
    ('defenses = ["cnn"]\n[[attacks]]\nname = "fgsm"\nepsilons = 0.1\n', "epsilons must be a list"),
    ('defenses = ["cnn"]\n[[attacks]]\nname = "pgd-linf"\nsteps = "ten"\nepsilons = [0.1]\n', "steps='ten'"),
    ('defenses = [{name = "cnn", weights = 5}]\n' + FGSM, "weights must be a file path"),
    ('reuse = "no"\ndefenses = ["cnn"]\n' + FGSM, "reuse must be true or false"),
    ('defenses = ["cnn@0..100000"]\n' + FGSM, "at most 100"),
])
def test_wrong_grid_values_are_named(isolated, text, expected):
    (isolated / "grid.toml").write_text(text)
    assert expected in one_line_error(invoke("run", isolated / "grid.toml"))


@pytest.mark.parametrize("where", ["defense", "attack"])
def test_a_numeric_label_stays_a_label_in_every_table(isolated, where):
    defense = '{name = "cnn", label = 5}' if where == "defense" else '"cnn"'
    attack = FGSM + ("label = 5\n" if where == "attack" else "")
    (isolated / "grid.toml").write_text(f"samples = 20\ndefenses = [{defense}]\n{attack}")
    for fmt in ("table", "csv", "latex", "html"):
        result = invoke("run", isolated / "grid.toml", "--format", fmt)
        assert result.exit_code == 0, result.output
    report = invoke("report", "--format", "csv")
    assert report.exit_code == 0, report.output
    summary = pd.read_csv(io.StringIO(report.stdout), dtype=str)
    assert "5" in set(summary[where])


FACTORIES = '''
import torch


def exits():
    raise SystemExit(3)


def raises():
    raise ValueError("no such layer")


def not_a_module():
    return 42


def five_outputs():
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 5))


def wrong_input():
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(100, 10))

'''


@pytest.mark.parametrize("factory, expected", [
    ("exits", "the factory raised SystemExit"),
    ("raises", "the factory raised ValueError: no such layer"),
    ("not_a_module", "returned int, not a torch module"),
    ("five_outputs", "but the data has 10 classes"),
    ("wrong_input", "fails on a batch of test inputs"),
])
def test_python_factories_that_misbehave_are_named(isolated, factory, expected):
    (isolated / "bad_factories.py").write_text(FACTORIES)
    line = one_line_error(invoke("attack", f"python:bad_factories:{factory}", "--attack", "fgsm", "--eps", "0.1",
                                 "--samples", "10", "--no-sanity"))
    assert expected in line and factory in line


def test_a_factory_module_exiting_on_import_is_named(isolated):
    (isolated / "exits_on_import.py").write_text("raise SystemExit(3)\n")
    line = one_line_error(invoke("attack", "python:exits_on_import:net", "--attack", "fgsm", "--eps", "0.1"))
    assert "importing exits_on_import raised SystemExit" in line


def test_only_functions_and_classes_are_called_as_factories(isolated):
    line = one_line_error(invoke("attack", "python:advbench.cli:main", "--attack", "fgsm", "--eps", "0.1"))
    assert "not a function or class" in line


def test_attack_accepts_a_seed_range_like_run(isolated, monkeypatch):
    monkeypatch.setenv("ADVBENCH_ZOO", str(REPO_ZOO))  # the shipped zoo holds cnn-digits and cnn-digits-seed1
    result = invoke("attack", "cnn@0..1", "--attack", "fgsm", "--eps", "0.1", "--samples", "10", "--no-sanity",
                    "--format", "csv")
    assert result.exit_code == 0, result.output
    assert {"cnn@0", "cnn@1"} <= {line.split(",")[0] for line in result.stdout.splitlines()}


def test_an_old_signature_minimum_norm_plugin_runs_with_a_warning(isolated):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")

        class OldSignatureNoise(MinimumNormAttack):
            """A minimum-norm plugin written for the old run(target, x, y, epsilon) (epsilon None)."""

            norm = Norm.L2
            gradient_based = False

            def run(self, target, x, y, epsilon):
                assert epsilon is None
                return (x + 0.5).clamp(0, 1)

    assert any("OldSignatureNoise" in str(w.message) and "no longer takes epsilon" in str(w.message)
               for w in caught)
    assert OldSignatureNoise.legacy_epsilon_argument
    with attacks.temporarily("old-noise", OldSignatureNoise):
        result = invoke("attack", "cnn", "--attack", "old-noise", "--samples", "10", "--no-sanity",
                        "--format", "csv")
    assert result.exit_code == 0, result.output


def test_curve_of_a_run_it_cannot_write_into_says_where_to_write(isolated, monkeypatch):
    (isolated / "grid.toml").write_text('samples = 10\nsanity = false\ndefenses = ["cnn"]\n' + FGSM)
    assert invoke("run", isolated / "grid.toml", "--format", "csv").exit_code == 0
    import os

    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if mode == os.W_OK else real_access(path, mode))
    line = one_line_error(invoke("curve"))
    assert "read-only" in line and "--out" in line
    monkeypatch.setattr(os, "access", real_access)
    written = invoke("curve", "--out", isolated / "curves")
    assert written.exit_code == 0, written.output
