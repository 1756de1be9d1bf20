"""Registry: decorators, duplicates, suggestions, and a real entry-point plugin package."""

from __future__ import annotations

import sys
import textwrap

import pytest

from advbench.errors import AdvbenchError
from advbench.registry import Registry, attacks, defenses
from helpers import invoke


def test_decorator_registers_and_duplicates_fail():
    reg = Registry("widget", "advbench.test-widgets", ())

    @reg.register("alpha", description="first widget")
    class Alpha:
        pass

    assert reg.get("alpha") is Alpha
    assert reg.entries()[0].description == "first widget"
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("alpha")(object)


def test_unknown_name_suggests_close_matches():
    with pytest.raises(AdvbenchError, match="did you mean pgd-linf"):
        attacks.get("pgd-lnf")
    with pytest.raises(AdvbenchError, match="unknown defense 'cnnn'; did you mean cnn"):
        defenses.get("cnnn")


PLUGIN_MODULE = '''
import torch
from advbench.attacks.base import Attack
from advbench.norms import Norm

class ZeroAttack(Attack):
    """returns the clean input (a plugin test attack)"""
    norm = Norm.LINF
    def __init__(self, *, scale: float = 1.0):
        self.scale = scale
    def run(self, target, x, y, epsilon):
        return x.clone()
'''


@pytest.fixture
def installed_plugin(tmp_path, monkeypatch):
    """Install a package the way pip would: module + .dist-info with entry_points.txt on sys.path."""
    (tmp_path / "advbench_zero_plugin.py").write_text(textwrap.dedent(PLUGIN_MODULE))
    dist = tmp_path / "advbench_zero_plugin-1.2.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: advbench-zero-plugin\nVersion: 1.2.3\n")
    (dist / "entry_points.txt").write_text(
        "[advbench.attacks]\nzero = advbench_zero_plugin:ZeroAttack\nbroken = advbench_missing_module:Thing\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    attacks.refresh()
    yield
    sys.modules.pop("advbench_zero_plugin", None)
    monkeypatch.undo()
    attacks.refresh()


def test_entry_point_plugin_is_listed_used_and_broken_one_isolated(installed_plugin, isolated):
    entries = {e.name: e for e in attacks.entries()}
    assert entries["zero"].origin == "advbench-zero-plugin 1.2.3"
    assert entries["pgd-linf"].origin == "built-in"
    assert entries["broken"].broken and "ModuleNotFoundError" in entries["broken"].error
    result = invoke(*["list", "attacks"])
    assert result.exit_code == 0
    assert "zero" in result.output and "advbench-zero-plugin 1.2.3" in result.output
    assert "BROKEN" in result.output
    with pytest.raises(AdvbenchError, match="failed to load"):
        attacks.get("broken")
    # the plugin attack runs through the normal runner path
    result = invoke(*["attack", "cnn", "--attack", "zero", "--eps", "0.1", "--samples", "20",
                                       "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert "zero" in result.output
