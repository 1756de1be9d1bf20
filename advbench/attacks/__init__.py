"""Built-in attacks register themselves on import."""

from typing import Any

from ..options import coerce_options
from ..registry import attacks
from .base import Attack, AttackKind, AttackOutput, AttackTarget, FixedEpsilonAttack, MinimumNormAttack
from . import bsearch, foolbox_attacks, gat_attacks, generator, gradient, gradient_free, noise, zoo_attack  # noqa: F401  (register built-ins)


def make_attack(name: str, options: dict[str, Any] | None = None) -> Attack:
    """Instantiate a registered attack with user options checked against its hyperparameters."""
    cls = attacks.get(name)
    return cls(**coerce_options(cls.__init__, options or {}, f"attack {name}"))


__all__ = ["Attack", "AttackKind", "AttackOutput", "AttackTarget", "FixedEpsilonAttack", "MinimumNormAttack",
           "make_attack"]
