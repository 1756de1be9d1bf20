"""advbench: a command-line benchmark for adversarial robustness.

Public API for plugin authors: subclass `Defense` or `Attack` and register them
with `register_defense` / `register_attack` (built-ins) or an entry point
(`advbench.defenses`, `advbench.attacks`, `advbench.datasets`) in a package.
"""

__version__ = "0.1.0"

from .errors import AdvbenchError  # noqa: E402
from .norms import Norm  # noqa: E402
from .registry import register_attack, register_dataset, register_defense  # noqa: E402


def __getattr__(name: str):
    """Heavy classes load on first use so `advbench --help` stays fast."""
    if name in {"Defense", "ModelDefense", "TrainableDefense", "Prediction"}:
        from . import defenses

        return getattr(defenses, name)
    if name in {"Attack", "AttackKind", "AttackTarget", "AttackOutput"}:
        from .attacks import base

        return getattr(base, name)
    raise AttributeError(name)


__all__ = [
    "AdvbenchError", "Norm", "register_attack", "register_dataset", "register_defense",
    "Defense", "ModelDefense", "TrainableDefense", "Prediction", "Attack", "AttackKind", "AttackTarget", "AttackOutput",
]
