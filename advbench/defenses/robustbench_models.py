"""RobustBench leaderboard models by name: the defense spec `robustbench:MODEL[:THREAT]`.

The model is built by the `robustbench` package (pip install 'advbench[robustbench]') from
a checkpoint in its model directory, laid out as RobustBench lays it out:
`<model dir>/<dataset>/<threat model>/<MODEL>.pt`. The model directory is
$ADVBENCH_ROBUSTBENCH_DIR (`--model-dir` sets it) or RobustBench's default `./models`.
advbench never downloads: a missing checkpoint is a one-line error naming the path, and
RobustBench's own download or a copied file puts it there. RobustBench models take inputs
on the [0, 1] scale and normalise inside, as advbench's defenses do.

robustbench 1.1.1 from PyPI imports `autoattack` (installable only from git) and
`pkg_resources` (gone from recent setuptools) when the package itself is imported; neither
is needed to build a model, so when that import fails the model zoo and its loader are
imported without the package's `__init__`.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import pickle
import sys
import types
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch

from ..data import DataInfo
from ..errors import AdvbenchError

MODEL_DIR_ENV = "ADVBENCH_ROBUSTBENCH_DIR"
INSTALL_HINT = "RobustBench models need the robustbench package: pip install 'advbench[robustbench]'"
THREATS = {"linf": "Linf", "l2": "L2", "corruptions": "corruptions"}
DATASETS = {"cifar10": "cifar10"}  # advbench dataset -> RobustBench dataset


def default_model_dir() -> Path:
    """Where RobustBench checkpoints are looked for unless a run names a directory."""
    return Path(os.environ.get(MODEL_DIR_ENV, "models"))


def threat_name(text: str) -> str:
    try:
        return THREATS[text.strip().lower()]
    except KeyError:
        raise AdvbenchError(f"unknown RobustBench threat model {text!r}: use Linf, L2 or corruptions") from None


def _module(name: str) -> Any:
    """`robustbench.<name>`, importing around the package's __init__ when that fails (see above)."""
    spec = importlib.util.find_spec("robustbench")
    if spec is None or not spec.submodule_search_locations:
        raise AdvbenchError(INSTALL_HINT)
    try:
        return importlib.import_module(f"robustbench.{name}")
    except ImportError:  # robustbench/__init__ wants autoattack and pkg_resources
        pass
    package = types.ModuleType("robustbench")
    package.__path__ = list(spec.submodule_search_locations)
    package.__spec__ = spec
    sys.modules["robustbench"] = package
    try:
        return importlib.import_module(f"robustbench.{name}")
    except ImportError as exc:
        raise AdvbenchError(f"cannot import robustbench.{name}: {exc}") from None


def checkpoint_path(model: str, threat: str, info: DataInfo, directory: Path | None = None) -> Path:
    """Where RobustBench's loader looks for MODEL's weights; checks the name against its zoo."""
    if info.name not in DATASETS:
        raise AdvbenchError(f"RobustBench models are for {', '.join(DATASETS)}; this grid's dataset is {info.name}")
    zoo = _module("model_zoo")
    enums = _module("model_zoo.enums")
    dataset, threat_model = enums.BenchmarkDataset(DATASETS[info.name]), enums.ThreatModel(threat)
    models = zoo.model_dicts[dataset][threat_model]
    if model not in models:
        close = [m for m in models if m.lower().startswith(model[:4].lower())][:5]
        raise AdvbenchError(f"RobustBench has no {info.name} {threat} model {model!r}"
                            + (f" (similar: {', '.join(close)})" if close else ""))
    return Path(directory or default_model_dir()) / dataset.value / threat_model.value / f"{model}.pt"


def plan(model: str, threat: str, info: DataInfo, directory: Path | None = None) -> Path:
    """The checkpoint MODEL loads from; a one-line error when it is not there (nothing is downloaded)."""
    path = checkpoint_path(model, threat, info, directory)
    if not path.is_file():
        raise AdvbenchError(f"no RobustBench checkpoint for {model} ({info.name}, {threat}) at {path}; put the "
                            f"weights there (RobustBench's download writes them there) or point --model-dir / "
                            f"${MODEL_DIR_ENV} at the directory holding {info.name}/{threat}/")
    return path


@contextmanager
def tensors_only_loading() -> Iterator[None]:
    """Inside this block every `torch.load` (RobustBench's own included) runs with
    `weights_only=True`, whatever its caller asked for or torch's default is: a checkpoint
    can hold tensors and numbers, never code that runs when it is read."""
    original = torch.load

    @functools.wraps(original)
    def safe_load(*args: Any, **kwargs: Any) -> Any:
        kwargs["weights_only"] = True
        return original(*args, **kwargs)

    torch.load = safe_load  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.load = original  # type: ignore[assignment]


def load(model: str, threat: str, info: DataInfo, path: Path) -> Any:
    """The RobustBench model, in eval mode, from the checkpoint `plan` found (read without unpickling code)."""
    utils = _module("utils")
    try:
        with tensors_only_loading():  # RobustBench's loader wants the directory above <dataset>/<threat>/
            return utils.load_model(model_name=model, model_dir=str(path.parents[2]), dataset=DATASETS[info.name],
                                    threat_model=threat).eval()
    except pickle.UnpicklingError:
        raise AdvbenchError(f"RobustBench checkpoint {path} holds pickled objects beyond tensors and numbers, which "
                            "advbench never unpickles; replace it with the leaderboard's original file") from None
    except (RuntimeError, KeyError, ValueError, OSError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AdvbenchError(f"RobustBench model {model}: cannot load {path}: {message}") from None
