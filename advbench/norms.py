"""Perturbation norms and epsilon parsing, shared by attacks, verification and metrics."""

from __future__ import annotations

import math
from enum import Enum
from fractions import Fraction
from typing import TYPE_CHECKING

from .errors import AdvbenchError

if TYPE_CHECKING:  # only tensor methods are called: reading records (reports) needs no torch
    import torch

BALL_TOLERANCE = 1e-5  # float slack when checking (and reading) whether a perturbation is inside its ball


class Norm(str, Enum):
    LINF = "linf"
    L2 = "l2"

    def __str__(self) -> str:
        return self.value

    @property
    def label(self) -> str:
        """How the field prints it: Linf, L2 (records and manifests keep the lower-case value)."""
        return {"linf": "Linf", "l2": "L2"}[self.value]

    def of(self, delta: torch.Tensor) -> torch.Tensor:
        """Per-sample norm of a batch of perturbations."""
        flat = delta.flatten(1)
        if self is Norm.LINF:
            return flat.abs().amax(dim=1)
        return flat.norm(p=2, dim=1)

    def dual_of(self, grad: torch.Tensor) -> torch.Tensor:
        """Per-sample dual norm of a batch of gradients (L1 for Linf, L2 for L2): a linear model's
        distance to its boundary is |margin| / dual norm of the margin's gradient."""
        flat = grad.flatten(1)
        if self is Norm.LINF:
            return flat.abs().sum(dim=1)
        return flat.norm(p=2, dim=1)

    def random_in_ball(self, x: torch.Tensor, eps: float) -> torch.Tensor:
        """A random perturbation of each sample within `eps`: uniform in the Linf ball; in the L2
        ball a uniform direction at a radius uniform in [0, eps] (as torchattacks). A draw uniform
        over the L2 ball (radius eps * u^(1/d)) lies almost on its surface in d dimensions and left
        PGD-L2 0.5-3 points weaker than torchattacks on the digits models (bench/pgd_crosscheck.py)."""
        import torch

        if self is Norm.LINF:
            return torch.empty_like(x).uniform_(-eps, eps)
        direction = torch.randn_like(x)
        view = (-1,) + (1,) * (x.dim() - 1)
        direction = direction / direction.flatten(1).norm(p=2, dim=1).clamp_min(1e-12).view(view)
        radius = torch.rand(len(x), device=x.device, dtype=x.dtype) * eps
        return direction * radius.view(view)


def parse_norm(value: str | Norm) -> Norm:
    aliases = {"linf": Norm.LINF, "inf": Norm.LINF, "l_inf": Norm.LINF, "l2": Norm.L2, "2": Norm.L2}
    try:
        return aliases[str(value).strip().lower()]
    except KeyError:
        raise AdvbenchError(f"unknown norm {value!r}: use one of {', '.join(n.value for n in Norm)}") from None


def parse_epsilon(value: str | float | int) -> float:
    """Read an epsilon on the data's [0,1] scale: `0.1`, `8/255` or a number from TOML."""
    if isinstance(value, bool):
        raise AdvbenchError(f"epsilon {value!r} is not a number")
    if isinstance(value, (int, float)):
        eps = float(value)
    else:
        text = str(value).strip()
        try:
            eps = float(Fraction(text)) if "/" in text else float(text)
        except (ValueError, ZeroDivisionError):
            raise AdvbenchError(f"epsilon {value!r} is not a number (write e.g. 0.1 or 8/255)") from None
    if math.isnan(eps):
        raise AdvbenchError(f"epsilon {value!r} is NaN")
    if math.isinf(eps):
        raise AdvbenchError(f"epsilon {value!r} is infinite")
    if eps < 0:
        raise AdvbenchError(f"epsilon {value!r} is negative")
    return eps


def check_epsilon_range(eps: float, norm: Norm, bounds: tuple[float, float], attack: str) -> None:
    """An Linf epsilon larger than the data range is almost surely a scale mistake (255 vs 1)."""
    low, high = bounds
    if norm is Norm.LINF and eps > high - low:
        raise AdvbenchError(
            f"Linf epsilon {eps:g} for {attack} exceeds the data range [{low:g}, {high:g}]; "
            "epsilons are on the 0-1 scale (write 8/255, not 8)"
        )
