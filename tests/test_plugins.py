"""The documented example plugin package (docs/example-plugin), installed with pip and used
by name from the CLI and in a grid: the plugin story of docs/plugins.md, end to end."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
EXAMPLE = ROOT / "docs" / "example-plugin"


pytestmark = pytest.mark.subprocess  # pip-installs the example package


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory, trained_zoo):
    """pip-install the example package into a private directory; the environment that sees it."""
    work = tmp_path_factory.mktemp("plugin")
    source = work / "source"
    shutil.copytree(EXAMPLE, source)
    target = work / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(target), str(source)], check=True, capture_output=True, text=True,
                   timeout=300)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")]),
           "ADVBENCH_ZOO": str(trained_zoo), "ADVBENCH_RESULTS": str(work / "results")}
    env.pop("ADVBENCH_DEBUG", None)
    weights = work / "tiny-mlp.pt"
    script = ("import torch, sys; from advbench_example_plugin import TinyMLP; torch.manual_seed(0); "
              f"torch.save(TinyMLP((1, 8, 8), 10).state_dict(), {str(weights)!r})")
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=120)
    return env, work, weights


def advbench(env, *args, cwd):
    return subprocess.run([sys.executable, "-m", "advbench", *map(str, args)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_plugin_is_listed_with_its_package(plugin_env):
    env, work, _ = plugin_env
    out = advbench(env, "list", cwd=work)
    assert out.returncode == 0, out.stderr
    assert "tiny-mlp" in out.stdout and "uniform-noise" in out.stdout
    assert "advbench-example-plugin 0.1.0" in out.stdout


def test_plugin_defense_with_only_forward_is_attacked_by_name(plugin_env):
    env, work, weights = plugin_env
    out = advbench(env, "attack", "tiny-mlp", "--weights", weights, "--attack", "pgd-linf", "--eps", "0.1",
                   "--steps", "5", "--samples", "20", "--format", "csv", cwd=work)
    assert out.returncode == 0, out.stderr
    assert "tiny-mlp,pgd-linf" in out.stdout
    missing = advbench(env, "attack", "tiny-mlp", "--attack", "fgsm", "--samples", "20", cwd=work)
    assert missing.returncode == 2 and "give its weights" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1


def test_plugin_defense_and_attack_in_a_grid(plugin_env):
    env, work, weights = plugin_env
    grid = work / "grid.toml"
    grid.write_text(f'samples = 20\ndefenses = ["cnn", {{name = "tiny-mlp", weights = "{weights}"}}]\n'
                    '[[attacks]]\nname = "uniform-noise"\nepsilons = [0.1, 0.3]\ndraws = 3\n'
                    '[[attacks]]\nname = "fgsm"\nepsilons = [0.1]\n')
    out = advbench(env, "run", grid, "--format", "csv", cwd=work)
    assert out.returncode == 0, out.stderr
    for defense in ("cnn", "tiny-mlp"):
        for attack in ("uniform-noise", "fgsm"):
            assert f"{defense},{attack}" in out.stdout
