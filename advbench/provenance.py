"""Where a run's numbers come from: advbench's commit and source, library versions, and the
code of every plugin and model a cell runs.

Manifests record the versions; content keys (`advbench.reuse`) hash the code, so a cell whose
attack, defense, dataset or model code changed since an earlier run is never reused, even
when no version number moved (a plugin edited in place, a `python:` model whose forward
changed while its weights did not, uncommitted edits to advbench itself).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import platform
import subprocess
import sys
import uuid
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import __version__
from .registry import BUILTIN, Registry

PACKAGE_DIR = Path(__file__).parent
# code whose source cannot be read (defined at an interactive prompt) gets a key of its own in
# every process: never reused, never wrongly reused
_UNREADABLE = f"unreadable-source-{uuid.uuid4().hex}"


def git_commit() -> str | None:
    """The git commit advbench runs from, or None outside a checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=PACKAGE_DIR)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


@functools.lru_cache(maxsize=1)
def source_revision() -> str | None:
    """The git commit advbench runs from (None for an installed release), read once."""
    return git_commit()


@functools.lru_cache(maxsize=1)
def package_source_sha256() -> str:
    """sha256 of advbench's own Python source: edits not yet committed change it too."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        digest.update(str(path.relative_to(PACKAGE_DIR)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def library_versions() -> dict[str, str | None]:
    """Versions of everything that can change the numbers."""
    versions: dict[str, str | None] = {"advbench": __version__, "python": platform.python_version(),
                                       "torch": str(torch.__version__)}
    for package in ("foolbox", "torchattacks", "torchvision", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def source_sha256(obj: Any) -> str:
    """sha256 of the source file of the module that defines `obj` (a class or function); for
    code without a file (a notebook cell), of its own source; else a key no other process shares."""
    module = sys.modules.get(getattr(obj, "__module__", "") or "")
    path = getattr(module, "__file__", None)
    if path and Path(path).is_file():
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    try:
        return hashlib.sha256(inspect.getsource(obj).encode()).hexdigest()
    except (OSError, TypeError):
        return _UNREADABLE


def plugin_code(registry: Registry[Any], name: str) -> dict[str, str] | None:
    """For a registry entry that is not built in (an installed plugin, or one registered at run
    time): its distribution and version and the hash of its module's source. None for built-ins,
    which `package_source_sha256` covers."""
    entry = registry.entry(name)
    if entry.origin == BUILTIN:
        return None
    return {"origin": entry.origin, "module": str(getattr(entry.obj, "__module__", "")),
            "source": source_sha256(entry.obj)}


def _is_covered(module_name: str) -> bool:
    """Code whose changes the versions in a content key already cover (torch, advbench)."""
    return module_name.split(".")[0] in ("torch", "advbench")


def model_code(model: nn.Module) -> list[list[str]]:
    """The classes a model is built from (its architecture, even where weights do not show it,
    e.g. ReLU swapped for Tanh), each with the hash of its module's source unless torch or
    advbench defines it."""
    classes = {type(module) for module in model.modules()}
    return sorted([f"{cls.__module__}.{cls.__qualname__}", "" if _is_covered(cls.__module__) else source_sha256(cls)]
                  for cls in classes)
