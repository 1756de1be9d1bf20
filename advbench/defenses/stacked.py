"""K copies of one network evaluated in a single pass, built from `grouped.py`'s layers.

GAT trains K one-vs-rest detectors; paper 001 names their training cost as the method's
main drawback. Stacking their weights lets one forward/backward pass serve all K, each
on its own input. Every parameter and buffer is laid out detector-major, so detector k's
slice of any tensor is `tensor.view(K, -1)[k]` (used for per-detector checkpoints).
"""

from __future__ import annotations

import torch
from torch import nn

from .grouped import GroupedConv2d, GroupedLinear


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    """Channels-last activations: on a CPU the K-grouped convolutions and max-pooling run
    1.2-1.35x faster in this layout (bench/gat_vectorized.py, its "NCHW layout" row)."""
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


class _StackedFlatten(nn.Module):
    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, K*C, H, W) -> (B, K, C*H*W)
        return x.reshape(x.shape[0], self.k, -1)


class StackedNetwork(nn.Module):
    """K independently initialised copies of `make_template()`, a Sequential of Conv2d,
    BatchNorm2d, ReLU, MaxPool2d/AvgPool2d, Flatten and Linear layers with one output.

    forward takes (B, K, C, H, W), one input per copy, and returns (B, K) logits.
    """

    def __init__(self, make_template, k: int) -> None:
        super().__init__()
        self.k = k
        templates = [make_template() for _ in range(k)]  # K independent initialisations
        layers: list[nn.Module] = []
        for index, layer in enumerate(templates[0]):
            if isinstance(layer, nn.Conv2d):
                stacked = GroupedConv2d.of([t[index] for t in templates])
            elif isinstance(layer, nn.Linear):
                stacked = GroupedLinear.of([t[index] for t in templates])
            elif isinstance(layer, nn.BatchNorm2d):
                stacked = nn.BatchNorm2d(k * layer.num_features)
            elif isinstance(layer, nn.Flatten):
                stacked = _StackedFlatten(k)
            elif isinstance(layer, (nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
                stacked = layer
            else:
                raise TypeError(f"cannot stack layer {type(layer).__name__}")
            if isinstance(stacked, nn.MaxPool2d) and layers and isinstance(layers[-1], nn.ReLU):
                layers.insert(-1, stacked)  # max-pool first: relu commutes with max, on a quarter of the values
            else:
                layers.append(stacked)
        self.layers = nn.Sequential(*layers)
        self.make_template = make_template

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, k = x.shape[:2]
        return self.layers(_channels_last(x.reshape(batch, k * x.shape[2], *x.shape[3:]))).reshape(batch, k)

    def same_input(self, x: torch.Tensor) -> torch.Tensor:
        """All K detectors on the same inputs: (B, C, H, W) -> (B, K); the first convolution
        runs once, densely, on x (not on K copies of it)."""
        first = self.layers[0]
        if isinstance(first, GroupedConv2d):
            return self.layers[1:](first.shared_input(_channels_last(x))).reshape(len(x), self.k)
        return self(x.unsqueeze(1).expand(-1, self.k, *x.shape[1:]))

    def detector_state(self, k: int) -> dict[str, torch.Tensor]:
        """Detector k's slice of every parameter and buffer."""
        return {name: t.reshape(self.k, -1)[k].clone() for name, t in self.state_dict().items() if t.dim() > 0}

    def load_detector_state(self, k: int, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for name, tensor in self.state_dict().items():
                if tensor.dim() > 0:
                    tensor.view(self.k, -1)[k].copy_(state[name])

    def detector(self, k: int) -> nn.Sequential:
        """Detector k as a standalone network (the sequential reference)."""
        template = self.make_template()
        with torch.no_grad():
            for layer, stacked in zip(template, self.layers):
                if isinstance(layer, (nn.Conv2d, nn.Linear)):
                    layer.weight.copy_(stacked.weight[k])
                    layer.bias.copy_(stacked.bias[k])
                elif isinstance(layer, nn.BatchNorm2d):
                    c = layer.num_features
                    for name in ("weight", "bias", "running_mean", "running_var"):
                        getattr(layer, name).copy_(getattr(stacked, name)[k * c:(k + 1) * c])
        return template

    def init_from_classifier(self, classifier: nn.Sequential) -> None:
        """Paper 001 A.2: detector k starts as the sub-network that computes logit k of a
        trained classifier with the same layers (its last layer's row k)."""
        with torch.no_grad():
            for layer, stacked in zip(classifier, self.layers):
                if isinstance(layer, (nn.Conv2d, nn.Linear)) and layer is not classifier[-1]:
                    stacked.weight.copy_(layer.weight.unsqueeze(0).expand_as(stacked.weight))
                    stacked.bias.copy_(layer.bias.unsqueeze(0).expand_as(stacked.bias))
                elif isinstance(layer, nn.BatchNorm2d):
                    for name in ("weight", "bias", "running_mean", "running_var"):
                        getattr(stacked, name).copy_(getattr(layer, name).repeat(self.k))
            last = classifier[-1]
            stacked = self.layers[-1]
            stacked.weight.copy_(last.weight[: self.k].unsqueeze(1))
            stacked.bias.copy_(last.bias[: self.k].unsqueeze(1))
