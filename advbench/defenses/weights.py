"""Weights into models: files read as tensors only, one-line errors, and model factories
called with the dataset facts they ask for by name.

Defenses (`Defense.load`) and the zoo both need this; it lives here so that nothing under
`defenses/` imports the zoo.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch

from ..errors import AdvbenchError


def load_tensors(source: Any, what: str, expected: str, path: Path | None = None) -> Any:
    """torch.load on CPU (GPU-saved files included) with one-line errors; never unpickles code."""
    path = path if path is not None else source
    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise AdvbenchError(f"{what} {path} does not exist") from None
    except Exception as exc:
        raise AdvbenchError(f"{what} {path} is corrupt or not {expected} ({type(exc).__name__}; advbench reads "
                            "tensors only and never runs code in a file)") from None


def load_state(model: torch.nn.Module, state: dict[str, Any], path: Path | str) -> None:
    """`model.load_state_dict(state)`, with the first mismatch as a one-line error naming `path`."""
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise AdvbenchError(f"weights in {path} do not fit the model: {first[1].strip() if len(first) > 1 else first[0]}") from None


def read_weights(path: Path) -> dict[str, Any]:
    """A state dict from a weights file (a bare state dict, or a dict holding one as `state_dict`)."""
    blob = load_tensors(path, "weights file", "a torch state dict")
    if isinstance(blob, dict) and "state_dict" in blob:
        blob = blob["state_dict"]
    if not isinstance(blob, dict):
        raise AdvbenchError(f"weights file {path} does not hold a state dict")
    return blob


def load_weights(model: torch.nn.Module, path: Path) -> None:
    """Load a state-dict file into `model`, with one-line errors."""
    load_state(model, read_weights(Path(path)), path)


def construct(factory: Any, info: Any) -> Any:
    """Call a model factory or class with the dataset facts it asks for by name
    (`input_shape`, `num_classes`, `info`)."""
    accepted = inspect.signature(factory).parameters
    facts = {} if info is None else {"input_shape": tuple(info.input_shape), "num_classes": info.num_classes,
                                     "info": info}
    return factory(**{k: v for k, v in facts.items() if k in accepted})
