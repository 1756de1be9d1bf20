"""`pgn`: perturb with one forward pass of a trained perturbation generator (paper 003 Fig. 3)."""

from __future__ import annotations

import torch

from ..errors import AdvbenchError
from ..norms import Norm
from ..zoo_names import default_name
from ..registry import register_attack
from .base import AttackTarget, MinimumNormAttack


@register_attack("pgn", description="one forward pass of a trained pgn generator (zoo entry, --opt generator=NAME); unbounded L2")
class GeneratorAttack(MinimumNormAttack):
    """The generator of a `pgn` zoo entry, fed the attacked model's gradient image.

    Its perturbations are not norm-bounded, so like a minimum-norm attack it runs once and
    the accuracy at each epsilon is read off the per-sample norms.
    """

    norm = Norm.L2

    def __init__(self, *, generator: str = "", scale: float = 1.0) -> None:
        if not scale > 0:
            raise AdvbenchError("pgn attack: scale must be positive")
        self.generator, self.scale = generator, scale

    def run(self, target: AttackTarget, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if target.load_model is None:
            raise AdvbenchError("pgn attack needs a model loader (run it through advbench)")
        name = self.generator or default_name("pgn", target.dataset)
        model = target.load_model(name)
        if not hasattr(model, "perturb"):
            raise AdvbenchError(f"pgn attack: {name} is not a pgn model (it has no generator)")
        adversarial = model.perturb(target.gradient_model, x, y, target.bounds, scale=self.scale)
        return adversarial.detach()
