"""Built-in attacks register themselves on import."""

import inspect
from typing import Any

from ..errors import AdvbenchError
from ..options import coerce_options
from ..registry import attacks
from .base import Adversarials, Attack, AttackKind, AttackOutput, AttackTarget, FixedEpsilonAttack, MinimumNormAttack
from . import apgd, autoattack, fab, fmn, square, bsearch, foolbox_attacks, gat_attacks, generator, gradient, gradient_free, noise, zoo_attack  # noqa: F401  (register built-ins)


def make_attack(name: str, options: dict[str, Any] | None = None) -> Attack:
    """Instantiate a registered attack with user options checked against its hyperparameters."""
    entry = attacks.entry(name)
    preset = dict(entry.preset)
    options = {k.replace("-", "_"): v for k, v in (options or {}).items()}
    if "norm" in options and "norm" in preset and str(options["norm"]).lower() == str(preset["norm"]):
        del options["norm"]  # `--norm` that agrees with the name says nothing new
    takes_norm = "norm" in inspect.signature(entry.obj.__init__).parameters
    if "norm" in options and "norm" not in preset and not takes_norm:
        own = getattr(entry.obj, "norm", None)
        if str(options["norm"]).lower() != str(own):
            raise AdvbenchError(f"attack {name} works in {own} only, not {options['norm']}")
        del options["norm"]
    fixed = sorted(set(options) & set(preset))
    if fixed:
        raise AdvbenchError(f"attack {name} fixes {fixed[0]}={preset[fixed[0]]}; pick the attack name for another "
                            f"{fixed[0]} instead (advbench list attacks)")
    return entry.obj(**preset, **coerce_options(entry.obj.__init__, options or {}, f"attack {name}"))


__all__ = ["Adversarials", "Attack", "AttackKind", "AttackOutput", "AttackTarget", "FixedEpsilonAttack", "MinimumNormAttack",
           "make_attack"]
