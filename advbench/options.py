"""Typed hyperparameters from strings (CLI) or TOML values.

Defenses and attacks declare their hyperparameters once (a dataclass or keyword-only
arguments with defaults); this module coerces user values to those types, rejects
unknown names, and keeps only what the user set so defaults live in one place.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from dataclasses import dataclass
from typing import Any, Mapping

from .errors import AdvbenchError


def parse_assignments(items: tuple[str, ...] | list[str]) -> dict[str, str]:
    """`key=value` strings (from repeated --opt) into a dict; dashes in keys become underscores."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise AdvbenchError(f"option {item!r} is not of the form key=value")
        out[key.strip().replace("-", "_")] = value.strip()
    return out


@dataclass(frozen=True)
class Range:
    """Allowed values of a hyperparameter; `low_open` excludes `low` itself."""

    low: float
    high: float = math.inf
    low_open: bool = False

    def admits(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        return above and value <= self.high

    def __str__(self) -> str:
        low = f"{'>' if self.low_open else '>='} {self.low:g}"
        return low if math.isinf(self.high) else f"{low} and <= {self.high:g}"


AT_LEAST_ONE = Range(1)
POSITIVE = Range(0, low_open=True)
NON_NEGATIVE = Range(0)
FRACTION = Range(0, 1)

# Ranges by hyperparameter name, for every defense and attack (CLI flags and grid files alike).
# A value equal to the declared default is always accepted: some defaults are sentinels
# (0 = "by input shape", -1 = "by dataset") that the defense resolves itself.
RANGES: dict[str, Range] = {
    **dict.fromkeys(["steps", "epochs", "batch_size", "restarts", "samples", "levels", "repeats", "eot_samples",
                     "classifier_epochs", "iterations", "binary_search_steps", "candidates", "coordinates",
                     "importance_samples", "val_samples", "val_steps", "inference_steps", "prototypes", "chunk",
                     "hidden", "latent", "width", "depth", "queries", "targets", "eot_iter"],
                    AT_LEAST_ONE),
    **dict.fromkeys(["lr", "generator_lr", "inference_lr", "rel_step_size", "sigma", "max_std", "h", "scale",
                     "spherical_step", "source_step", "init_epsilon", "upper", "step_adaptation", "eta"], POSITIVE),
    **dict.fromkeys(["step_size", "eps", "beta", "gamma", "confidence", "weight_decay", "initial_const",
                     "overshoot", "adv_coefficient", "c_l", "noise_std", "lower", "padding", "decay",
                     "momentum"], NON_NEGATIVE),
    **dict.fromkeys(["dropout", "mix", "validation", "ema_decay", "p_init", "alpha_max"], FRACTION),
}


def check_range(name: str, value: Any, default: Any, owner: str) -> None:
    """Reject non-finite numbers and values outside the name's range (defaults always pass)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if not math.isfinite(value):
        raise AdvbenchError(f"{owner} option {name.replace('_', '-')}={value!r} is not a finite number")
    allowed = RANGES.get(name)
    if allowed is not None and value != default and not allowed.admits(value):
        raise AdvbenchError(f"{owner} option {name.replace('_', '-')}={value!r} is out of range: it must be {allowed}")


def _from_text(name: str, text: str, default: Any, owner: str) -> Any:
    text = text.strip()
    try:
        if isinstance(default, bool):
            truth = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}
            return truth[text.lower()]
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            from .norms import parse_epsilon

            return parse_epsilon(text) if "/" in text else float(text)
    except (KeyError, ValueError):
        raise AdvbenchError(f"{owner} option {name}={text!r} is not a valid {type(default).__name__}") from None
    return text


def _coerce(name: str, value: Any, default: Any, owner: str) -> Any:
    if isinstance(value, str) and default is not None and not isinstance(default, str):
        value = _from_text(name, value, default, owner)
    if isinstance(default, bool) != isinstance(value, bool) and default is not None:
        raise AdvbenchError(f"{owner} option {name} expects {type(default).__name__}, got {value!r}")
    if isinstance(default, (int, float)) and not isinstance(value, (int, float)):
        raise AdvbenchError(f"{owner} option {name} expects a number, got {value!r}")
    if isinstance(value, float) and math.isnan(value):
        raise AdvbenchError(f"{owner} option {name} is NaN")
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    return value


def declared_defaults(target: Any) -> dict[str, Any]:
    """Hyperparameter names and defaults of a dataclass type or a callable's keyword-only arguments."""
    if dataclasses.is_dataclass(target):
        return {
            f.name: (f.default if f.default is not dataclasses.MISSING else f.default_factory())  # type: ignore[misc]
            for f in dataclasses.fields(target)
        }
    params = inspect.signature(target).parameters.values()
    return {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY and p.default is not p.empty}


def coerce_options(target: Any, values: Mapping[str, Any], owner: str) -> dict[str, Any]:
    """Validate user-set options against `target`'s declared hyperparameters."""
    defaults = declared_defaults(target)
    out: dict[str, Any] = {}
    for raw_name, value in values.items():
        name = raw_name.replace("-", "_")
        if name not in defaults:
            known = ", ".join(n.replace("_", "-") for n in defaults) or "none"
            raise AdvbenchError(f"{owner} has no option {raw_name!r} (options: {known})")
        out[name] = _coerce(name, value, defaults[name], owner)
        check_range(name, out[name], defaults[name], owner)
    return out


# Input shapes whose defaults `advbench list --params` shows for "by input shape" options.
SHAPE_EXAMPLES = (("8x8", (1, 8, 8)), ("28x28", (1, 28, 28)), ("32x32", (3, 32, 32)))


def describe_parameters(obj: Any, preset: Mapping[str, Any] = {}) -> str:
    """`--name default, ...` for a registered defense or attack class, with the real default
    where the declared one is a placeholder: by input shape for defenses (resolved for 8x8,
    28x28 and 32x32 inputs), or what the attack derives it from."""
    config_cls = getattr(obj, "Config", None)
    declared = declared_defaults(config_cls or obj.__init__)
    texts = {k: str(v) for k, v in declared.items() if k not in preset}
    if config_cls is not None and hasattr(obj, "resolve_config"):
        from .data import DataInfo

        by_shape: dict[str, list[str]] = {}
        for label, shape in SHAPE_EXAMPLES:
            try:
                resolved = dataclasses.asdict(obj.resolve_config(config_cls(), DataInfo(label, shape, 10)))
            except Exception:  # noqa: BLE001 - a plugin's resolver may need more than a shape
                continue
            for name, value in resolved.items():
                by_shape.setdefault(name, []).append(f"{label} {_short(value)}")
        for name, values in by_shape.items():
            if name in texts and any(v.split(" ", 1)[1] != _short(declared[name]) for v in values):
                texts[name] = "by input shape (" + ", ".join(values) + ")"
    for name, meaning in getattr(obj, "derived_defaults", {}).items():
        if name in texts:
            texts[name] = meaning
    return ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in texts.items())


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
