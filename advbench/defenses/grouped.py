"""G independent copies of a layer evaluated in one call (grouped convolutions, batched matmuls):
the one implementation of "K copies of a network" in advbench.

ABS-like models hold one decoder (and, without a shared encoder, one encoder) per class;
their inference evaluates every class at every step. GAT's K detectors (`stacked.py`) are
built from the same layers. Grouping the K copies turns K calls into one. Activations are
laid out group-major: (B, G*C, H, W) for images and (B, G, F) for vectors, so group g's
channels are `[g*C:(g+1)*C]`.
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
                 padding: int = 0, *, copies: list[nn.Conv2d] | None = None) -> None:
        super().__init__()
        templates = copies or [nn.Conv2d(in_channels, out_channels, kernel, stride, padding) for _ in range(groups)]
        self.groups, self.stride, self.padding = groups, stride, padding
        self.weight, self.bias = _stack(templates, "weight"), _stack(templates, "bias")

    @classmethod
    def of(cls, convs: list[nn.Conv2d]) -> "GroupedConv2d":
        """The given convolutions (same shape) as one grouped layer, weights copied."""
        conv = convs[0]
        return cls(len(convs), conv.in_channels, conv.out_channels, conv.kernel_size[0], conv.stride[0],
                   conv.padding[0], copies=convs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g, out, inp, kh, kw = self.weight.shape
        return F.conv2d(x, self.weight.reshape(g * out, inp, kh, kw), self.bias.reshape(-1), self.stride,
                        self.padding, groups=g)

    def shared_input(self, x: torch.Tensor) -> torch.Tensor:
        """Every copy on the same input: (B, in, H, W) -> (B, G*out, H', W'), one dense
        convolution instead of a grouped one on G stacked copies of x."""
        g, out, inp, kh, kw = self.weight.shape
        return F.conv2d(x, self.weight.reshape(g * out, inp, kh, kw), self.bias.reshape(-1), self.stride,
                        self.padding)


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

    def __init__(self, groups: int, in_features: int, out_features: int, *,
                 copies: list[nn.Linear] | None = None) -> None:
        super().__init__()
        templates = copies or [nn.Linear(in_features, out_features) for _ in range(groups)]
        self.weight, self.bias = _stack(templates, "weight"), _stack(templates, "bias")  # (G, out, in)

    @classmethod
    def of(cls, linears: list[nn.Linear]) -> "GroupedLinear":
        """The given linear layers (same shape) as one grouped layer, weights copied."""
        return cls(len(linears), linears[0].in_features, linears[0].out_features, copies=linears)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bgi,goi->bgo", x, self.weight) + self.bias
