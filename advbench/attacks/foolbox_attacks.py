"""Minimum-norm attacks wrapped from foolbox: deepfool-l2, deepfool-linf, cw-l2, ddn.

Wrapped, not rewritten: foolbox runs on the defense's gradient model (so adaptive
surrogates and EOT apply), and the runner re-checks every result with the defense.
"""

from __future__ import annotations

import warnings

import torch

from ..errors import AdvbenchError
from ..norms import Norm
from ..registry import register_attack
from .base import AttackTarget, MinimumNormAttack


class _FoolboxAttack(MinimumNormAttack):
    def _foolbox_attack(self, target: AttackTarget):  # pragma: no cover - abstract
        raise NotImplementedError

    def run(self, target: AttackTarget, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        import foolbox as fb

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # foolbox's deprecation noise from eagerpy
            model = fb.PyTorchModel(target.gradient_model, bounds=target.bounds, device=x.device)
            _, clipped, _ = self._foolbox_attack(target)(model, x, y, epsilons=None)
        clipped = clipped.detach()
        # foolbox divides by gradient norms: zero gradients give NaN, which means "failed here"
        broken = ~torch.isfinite(clipped.flatten(1)).all(dim=1)
        clipped[broken] = x[broken]
        return clipped


@register_attack("deepfool-l2", description="DeepFool (Moosavi-Dezfooli et al. 2016), minimum L2 norm, via foolbox")
class L2DeepFool(_FoolboxAttack):
    fast_options = {"steps": 15, "candidates": 4}
    norm = Norm.L2
    _foolbox_name = "L2DeepFoolAttack"

    def __init__(self, *, steps: int = 50, candidates: int = 10, overshoot: float = 0.02, loss: str = "logits") -> None:
        if loss not in ("logits", "crossentropy"):
            raise AdvbenchError("deepfool loss must be logits or crossentropy")
        self.steps, self.candidates, self.overshoot, self.loss = steps, candidates, overshoot, loss

    def _foolbox_attack(self, target: AttackTarget):
        import foolbox.attacks as fa

        return getattr(fa, self._foolbox_name)(steps=self.steps, candidates=min(self.candidates, target.num_classes),
                                               overshoot=self.overshoot, loss=self.loss)


@register_attack("deepfool-linf", description="DeepFool, minimum Linf norm, via foolbox")
class LinfDeepFool(L2DeepFool):
    norm = Norm.LINF
    _foolbox_name = "LinfDeepFoolAttack"


@register_attack("cw-l2", description="Carlini-Wagner L2 (binary search over c, Adam steps, confidence kappa), via foolbox")
class CarliniWagnerL2(_FoolboxAttack):
    fast_options = {"steps": 30, "binary_search_steps": 4}
    norm = Norm.L2

    def __init__(self, *, binary_search_steps: int = 8, steps: int = 100, step_size: float = 0.05,
                 confidence: float = 0.0, initial_const: float = 0.01, abort_early: bool = True) -> None:
        if binary_search_steps < 1 or steps < 1:
            raise AdvbenchError("cw-l2: binary-search-steps and steps must be at least 1")
        self.binary_search_steps, self.steps, self.step_size = binary_search_steps, steps, step_size
        self.confidence, self.initial_const, self.abort_early = confidence, initial_const, abort_early

    def _foolbox_attack(self, target: AttackTarget):
        import foolbox.attacks as fa

        return fa.L2CarliniWagnerAttack(binary_search_steps=self.binary_search_steps, steps=self.steps,
                                        stepsize=self.step_size, confidence=self.confidence,
                                        initial_const=self.initial_const, abort_early=self.abort_early)


@register_attack("ddn", description="decoupled direction and norm (Rony et al. 2019), minimum L2 norm, via foolbox")
class DDN(_FoolboxAttack):
    fast_options = {"steps": 30}
    norm = Norm.L2

    def __init__(self, *, steps: int = 100, init_epsilon: float = 1.0, gamma: float = 0.05) -> None:
        if steps < 1:
            raise AdvbenchError("ddn: steps must be at least 1")
        self.steps, self.init_epsilon, self.gamma = steps, init_epsilon, gamma

    def _foolbox_attack(self, target: AttackTarget):
        import foolbox.attacks as fa

        return fa.DDNAttack(init_epsilon=self.init_epsilon, steps=self.steps, gamma=self.gamma)
