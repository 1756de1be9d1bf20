"""`zoo`: zeroth-order optimisation attack (Chen et al. 2017; paper 002 §III.2), ZOO-ADAM.

Minimises ||delta||^2 + c * max(log p_y - max_{j != y} log p_j, -kappa) using only the
defense's decisions: at each iteration, symmetric finite differences on `coordinates`
random coordinates per sample (2 queries each, batched), a coordinate-wise Adam step,
and clipping to the box. Keeps, per sample, the smallest-L2 misclassified point found;
a binary search over c trades success against distortion. Queries are counted by the
runner like every model evaluation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import AdvbenchError
from ..norms import Norm
from ..registry import register_attack
from .base import AttackTarget, MinimumNormAttack
from .engine import SmallestSuccess


def hinge_on_log_probabilities(logits: torch.Tensor, labels: torch.Tensor, confidence: float) -> torch.Tensor:
    """max(log p_y - max_{j != y} log p_j, -kappa): <= 0 once misclassified with margin kappa."""
    log_p = F.log_softmax(logits, dim=1)
    true = log_p.gather(1, labels[:, None]).squeeze(1)
    other = log_p.scatter(1, labels[:, None], float("-inf")).amax(1)
    return (true - other).clamp_min(-confidence)


def common_random_numbers(function, *inputs: torch.Tensor) -> list[torch.Tensor]:
    """`function` on each input with the same random state, so a stochastic defense draws the same
    noise for the probes at x + h and x - h and their difference measures the input change,
    not the noise (common random numbers)."""
    seed = int(torch.randint(2 ** 62, ()).item())
    devices = [inputs[0].device] if inputs[0].is_cuda else []
    outputs = []
    for tensor in inputs:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            outputs.append(function(tensor))
    return outputs


def coordinate_differences(loss_of, x: torch.Tensor, coordinates: torch.Tensor, h: float) -> torch.Tensor:
    """(loss(x + h e_i) - loss(x - h e_i)) / 2h for coordinates (B, n) of the flattened inputs,
    in two batched calls of `loss_of` on B * n inputs each. Returns (B, n)."""
    batch, n = coordinates.shape
    flat = x.flatten(1)
    rows, columns = torch.arange(batch, device=x.device)[:, None], torch.arange(n, device=x.device)[None]
    owners = torch.arange(batch, device=x.device).repeat_interleave(n)
    plus, minus = flat.repeat_interleave(n, 0).view(batch, n, -1), flat.repeat_interleave(n, 0).view(batch, n, -1)
    plus[rows, columns, coordinates] += h
    minus[rows, columns, coordinates] -= h
    up, down = common_random_numbers(lambda probes: loss_of(probes.view(-1, *x.shape[1:]), owners), plus, minus)
    return (up - down).view(batch, n) / (2 * h)


@register_attack("zoo", description="ZOO-ADAM (Chen et al. 2017): zeroth-order coordinate-wise Adam on the hinge loss "
                                     "of log-probabilities, minimum L2; gradient-free, queries counted")
class ZerothOrderOptimization(MinimumNormAttack):
    fast_options = {"iterations": 40, "coordinates": 32, "step_size": 0.05}
    norm = Norm.L2
    gradient_based = False

    def __init__(self, *, iterations: int = 500, coordinates: int = 128, step_size: float = 0.01, h: float = 1e-4,
                 confidence: float = 0.0, initial_const: float = 10.0, binary_search_steps: int = 1,
                 beta1: float = 0.9, beta2: float = 0.999) -> None:
        if iterations < 1 or coordinates < 1 or binary_search_steps < 1:
            raise AdvbenchError("zoo: iterations, coordinates and binary-search-steps must be at least 1")
        if not (step_size > 0 and h > 0 and initial_const > 0 and confidence >= 0):
            raise AdvbenchError("zoo: step-size, h and initial-const must be positive, confidence >= 0")
        self.iterations, self.coordinates, self.step_size, self.h = iterations, coordinates, step_size, h
        self.confidence, self.initial_const, self.binary_search_steps = confidence, initial_const, binary_search_steps
        self.beta1, self.beta2 = beta1, beta2

    @torch.no_grad()
    def run(self, target: AttackTarget, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        low, high = target.bounds
        smallest = SmallestSuccess(x)
        const = torch.full((len(x),), self.initial_const, device=x.device)
        lower, upper = torch.zeros_like(const), torch.full_like(const, float("inf"))
        dims = x[0].numel()
        n = min(self.coordinates, dims)
        for _ in range(self.binary_search_steps):
            found = self._optimise(target, x, y, const, smallest, n, dims, low, high)
            # success: try a smaller c (less distortion); failure: a larger one
            upper = torch.where(found, torch.minimum(upper, const), upper)
            lower = torch.where(found, lower, torch.maximum(lower, const))
            const = torch.where(upper < float("inf"), (lower + upper) / 2, const * 10)
        return smallest.points

    def _optimise(self, target: AttackTarget, x: torch.Tensor, y: torch.Tensor, const: torch.Tensor,
                  smallest: SmallestSuccess, n: int, dims: int, low: float, high: float) -> torch.Tensor:
        adv = x.clone()
        m, v = torch.zeros_like(x).flatten(1), torch.zeros_like(x).flatten(1)
        steps = torch.zeros_like(m)
        found = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        rows = torch.arange(len(x), device=x.device)[:, None]

        def hinge(inputs: torch.Tensor, owners: torch.Tensor) -> torch.Tensor:
            return const[owners] * hinge_on_log_probabilities(target.decision_model(inputs), y[owners], self.confidence)

        for _ in range(self.iterations):
            coordinates = torch.rand(len(x), dims, device=x.device).argsort(1)[:, :n]
            grad = coordinate_differences(hinge, adv, coordinates, self.h)
            grad += 2 * (adv - x).flatten(1).gather(1, coordinates)  # the distortion term's exact gradient
            m_i = self.beta1 * m[rows, coordinates] + (1 - self.beta1) * grad
            v_i = self.beta2 * v[rows, coordinates] + (1 - self.beta2) * grad.pow(2)
            t_i = steps[rows, coordinates] + 1
            m[rows, coordinates], v[rows, coordinates], steps[rows, coordinates] = m_i, v_i, t_i
            update = self.step_size * (m_i / (1 - self.beta1 ** t_i)) / ((v_i / (1 - self.beta2 ** t_i)).sqrt() + 1e-8)
            flat = adv.flatten(1).clone()
            flat[rows, coordinates] = (flat[rows, coordinates] - update).clamp(low, high)
            adv = flat.view_as(x)
            wrong = target.decision_model(adv).argmax(1) != y
            size = Norm.L2.of(adv - x)
            smallest.offer(adv, size, wrong)
            found |= wrong
        return found
