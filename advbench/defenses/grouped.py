"""G independent copies of a layer evaluated in one call (grouped convolutions, batched matmuls).

ABS-like models hold one decoder (and, without a shared encoder, one encoder) per class;
their inference evaluates every class at every step. Grouping the K copies turns K
calls into one. Activations are laid out group-major: (B, G*C, H, W) for images and
(B, G, F) for vectors, so group g's channels are `[g*C:(g+1)*C]`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _stack(templates: list[nn.Module], name: str) -> nn.Parameter:
    return nn.Parameter(torch.stack([getattr(t, name).detach() for t in templates]).clone())


class GroupedConv2d(nn.Module):
    """G independently initialised Conv2d(in, out, k, s, p): (B, G*in, H, W) -> (B, G*out, H', W')."""

    def __init__(self, groups: int, in_channels: int, out_channels: int, kernel: int, stride: int = 1,
                 padding: int = 0) -> None:
        super().__init__()
        templates = [nn.Conv2d(in_channels, out_channels, kernel, stride, padding) for _ in range(groups)]
        self.groups, self.stride, self.padding = groups, stride, padding
        self.weight, self.bias = _stack(templates, "weight"), _stack(templates, "bias")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g, out, inp, kh, kw = self.weight.shape
        return F.conv2d(x, self.weight.reshape(g * out, inp, kh, kw), self.bias.reshape(-1), self.stride,
                        self.padding, groups=g)


class GroupedConvTranspose2d(nn.Module):
    """G independently initialised ConvTranspose2d: (B, G*in, H, W) -> (B, G*out, H', W')."""

    def __init__(self, groups: int, in_channels: int, out_channels: int, kernel: int, stride: int = 1,
                 padding: int = 0) -> None:
        super().__init__()
        templates = [nn.ConvTranspose2d(in_channels, out_channels, kernel, stride, padding) for _ in range(groups)]
        self.groups, self.stride, self.padding = groups, stride, padding
        self.weight, self.bias = _stack(templates, "weight"), _stack(templates, "bias")  # (G, in, out, k, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g, inp, out, kh, kw = self.weight.shape
        return F.conv_transpose2d(x, self.weight.reshape(g * inp, out, kh, kw), self.bias.reshape(-1),
                                  self.stride, self.padding, groups=g)


class GroupedLinear(nn.Module):
    """G independently initialised Linear(in, out): (B, G, in) -> (B, G, out)."""

    def __init__(self, groups: int, in_features: int, out_features: int) -> None:
        super().__init__()
        templates = [nn.Linear(in_features, out_features) for _ in range(groups)]
        self.weight, self.bias = _stack(templates, "weight"), _stack(templates, "bias")  # (G, out, in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bgi,goi->bgo", x, self.weight) + self.bias
