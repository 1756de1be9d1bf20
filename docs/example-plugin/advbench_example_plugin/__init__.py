"""A minimal advbench plugin: a defense that is only `forward` (plus a weights file) and a
fixed-epsilon attack that is only `run`."""

import torch
from torch import nn

from advbench import Defense, FixedEpsilonAttack, Norm


class TinyMLP(Defense):
    """a two-layer perceptron (example plugin defense)"""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        size = 1
        for dim in input_shape:
            size *= dim
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(size, 32), nn.ReLU(), nn.Linear(32, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class UniformNoise(FixedEpsilonAttack):
    """uniform noise in the Linf ball (example plugin attack)"""

    norm = Norm.LINF
    gradient_based = False

    def __init__(self, *, draws: int = 1) -> None:
        self.draws = draws

    def run(self, target, x: torch.Tensor, y: torch.Tensor, *, epsilon: float) -> torch.Tensor:
        low, high = target.bounds
        best = x.clone()
        for _ in range(self.draws):
            candidate = (x + torch.empty_like(x).uniform_(-epsilon, epsilon)).clamp(low, high)
            wrong = target.decision_model(candidate).argmax(1) != y
            best[wrong] = candidate[wrong]
        return best
