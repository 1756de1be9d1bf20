"""Encoder, per-class decoders and latent discriminator of ABS-like models (paper 004 Table 9).

Layer specs are (channels, kernel, stride, padding). The decoder's last layer maps to the
image channels and ends in a sigmoid (inputs live in [0, 1]); the others use batch
normalisation and ReLU, as in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .grouped import GroupedConv2d, GroupedConvTranspose2d, GroupedLinear

Layer = tuple[int, int, int, int]


@dataclass(frozen=True)
class Architecture:
    latent: int
    encoder: tuple[Layer, ...]
    decoder: tuple[Layer, ...]   # the last layer's channels are replaced by the image channels
    discriminator: tuple[int, ...]


# paper 004 Table 9
MNIST_LIKE = Architecture(10, ((16, 5, 2, 2), (32, 5, 2, 2), (64, 5, 2, 2), (64, 4, 1, 1)),
                          ((32, 4, 1, 0), (32, 5, 2, 0), (16, 5, 2, 0), (8, 4, 1, 0), (1, 1, 1, 0)), (256, 128))
TRAFFIC_SIGNS = Architecture(16, ((16, 5, 2, 2), (32, 5, 2, 2), (64, 5, 2, 2), (128, 4, 1, 0)),
                             ((64, 4, 1, 0), (64, 4, 2, 1), (32, 4, 2, 1), (16, 4, 2, 1), (3, 1, 1, 0)), (256, 128))
SVHN = Architecture(40, ((32, 5, 2, 2), (64, 5, 2, 2), (128, 5, 2, 2), (128, 4, 1, 0)),
                    ((64, 4, 1, 0), (64, 4, 2, 1), (32, 4, 2, 1), (16, 4, 2, 1), (3, 1, 1, 0)), (512, 256))
# Table 9 scaled to 8x8 inputs (digits): 8 -> 8 -> 4 -> 1 and back
DIGITS = Architecture(8, ((16, 3, 1, 1), (32, 3, 2, 1), (64, 4, 1, 0)),
                      ((32, 4, 1, 0), (16, 4, 2, 1), (1, 1, 1, 0)), (64, 32))


def architecture_for(dataset: str, input_shape: tuple[int, ...]) -> Architecture:
    hw = tuple(input_shape[1:])
    if hw == (8, 8):
        return DIGITS
    if hw == (28, 28):
        return MNIST_LIKE
    if hw == (32, 32):
        return SVHN if dataset == "svhn" else TRAFFIC_SIGNS
    raise ValueError(f"no ABS architecture for inputs of shape {tuple(input_shape)} (8x8, 28x28 and 32x32 are supported)")


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


class Encoder(nn.Module):
    """`groups` encoders (1: shared, K: one per class) proposing q(z|x) = N(mean, exp(log_var)).

    (B, C, H, W) -> mean, log_var, each (B, groups, latent)."""

    def __init__(self, arch: Architecture, input_shape: tuple[int, ...], groups: int) -> None:
        super().__init__()
        self.groups = groups
        channels, size = input_shape[0], input_shape[1]
        layers: list[nn.Module] = []
        for out, kernel, stride, padding in arch.encoder:
            layers += [GroupedConv2d(groups, channels, out, kernel, stride, padding), nn.ReLU()]
            channels, size = out, _conv_out(size, kernel, stride, padding)
        self.features = nn.Sequential(*layers)
        self.head = GroupedLinear(groups, channels * size * size, 2 * arch.latent)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(x.repeat(1, self.groups, 1, 1) if self.groups > 1 else x)
        mean, log_var = self.head(h.reshape(len(x), self.groups, -1)).chunk(2, dim=-1)
        return mean, log_var.clamp(-10, 5)


class Decoders(nn.Module):
    """K class-conditional decoders G_k evaluated together: z (B, K, latent) -> (B, K, C, H, W)."""

    def __init__(self, arch: Architecture, input_shape: tuple[int, ...], k: int) -> None:
        super().__init__()
        self.k, self.shape = k, tuple(input_shape)
        channels = arch.latent
        layers: list[nn.Module] = []
        for index, (out, kernel, stride, padding) in enumerate(arch.decoder):
            last = index == len(arch.decoder) - 1
            out = input_shape[0] if last else out
            layers.append(GroupedConvTranspose2d(k, channels, out, kernel, stride, padding))
            layers += [nn.Sigmoid()] if last else [nn.BatchNorm2d(k * out), nn.ReLU()]
            channels = out
        self.layers = nn.Sequential(*layers)

    def single(self, k: int) -> nn.Sequential:
        """Decoder k alone as ordinary layers (the looped reference for tests and benchmarks):
        (B, latent) -> (B, C, H, W)."""
        layers: list[nn.Module] = [nn.Unflatten(1, (-1, 1, 1))]
        with torch.no_grad():
            for layer in self.layers:
                if isinstance(layer, GroupedConvTranspose2d):
                    _, inp, out, kernel, _ = layer.weight.shape
                    conv = nn.ConvTranspose2d(inp, out, kernel, layer.stride, layer.padding)
                    conv.weight.copy_(layer.weight[k])
                    conv.bias.copy_(layer.bias[k])
                    layers.append(conv)
                elif isinstance(layer, nn.BatchNorm2d):
                    c = layer.num_features // self.k
                    norm = nn.BatchNorm2d(c)
                    for name in ("weight", "bias", "running_mean", "running_var"):
                        getattr(norm, name).copy_(getattr(layer, name)[k * c:(k + 1) * c])
                    layers.append(norm)
                else:
                    layers.append(layer)
        return nn.Sequential(*layers).train(self.training).to(self.layers[0].weight.device)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        batch = z.shape[0]
        images = self.layers(z.reshape(batch, -1, 1, 1))
        if tuple(images.shape[2:]) != self.shape[1:]:
            raise RuntimeError(f"decoder produced {tuple(images.shape[2:])} for inputs {self.shape[1:]}")
        return images.reshape(batch, self.k, *self.shape)


class Discriminator(nn.Module):
    """Latent discriminator of the adversarial autoencoder: logit of "z was drawn from the prior"."""

    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = arch.latent
        for hidden in arch.discriminator:
            layers += [nn.Linear(width, hidden), nn.LeakyReLU(0.2)]
            width = hidden
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).squeeze(-1)

    def neg_log_prob_prior(self, z: torch.Tensor) -> torch.Tensor:
        """-log D(z) >= 0, the latent cost of E-ABS."""
        return F.softplus(-self(z))
