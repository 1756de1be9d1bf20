"""`gfz` and `dfz`: generative vs discriminative latent-variable classifiers (paper 002, after
Li, Bradshaw & Sharma, ICML 2019).

- GFZ: p(z) p(y|z) p(x|z,y) — an MLP for p(y|z), a dense + transposed-convolution decoder for p(x|z,y);
- DFZ: p(z) p(x|z) p(y|x,z) — a convolutional p(y|x,z) and a decoder for p(x|z).
Both are trained on the variational lower bound with an amortised Gaussian q(z|x,y)
(convolutional encoder) and classify by log p(x, y=c), estimated with K importance samples
from q(z|x,c) for every class c. Those estimates are the logits, so the model is stochastic
(attacked with EOT) and logit-based detection (`+detect`) applies directly. p(x|.) is a
Bernoulli likelihood on [0, 1] intensities.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data import DataInfo, Dataset
from ..errors import AdvbenchError
from ..progress import Observer
from ..registry import register_defense
from .base import TrainableDefense
from .training import CheckpointPlace, EpochLoop

LOG_2PI = math.log(2 * math.pi)


def conv_features(input_shape: tuple[int, ...], width: int) -> tuple[nn.Sequential, int]:
    """Stride-2 convolutions down to at most 4x4 pixels; returns the stack and its flat output size."""
    channels, size = input_shape[0], input_shape[1]
    layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
    channels = width
    while size > 4:
        layers += [nn.Conv2d(channels, 2 * channels, 3, stride=2, padding=1), nn.ReLU()]
        channels, size = 2 * channels, (size + 1) // 2
    layers.append(nn.Flatten())
    return nn.Sequential(*layers), channels * size * size


class ImageDecoder(nn.Module):
    """Dense layers then two stride-2 transposed convolutions: (B, in) -> Bernoulli logits (B, C, H, W)."""

    def __init__(self, in_features: int, input_shape: tuple[int, ...], hidden: int) -> None:
        super().__init__()
        self.shape = tuple(input_shape)
        self.seed_hw = (math.ceil(input_shape[1] / 4), math.ceil(input_shape[2] / 4))
        self.dense = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(),
                                   nn.Linear(hidden, 64 * self.seed_hw[0] * self.seed_hw[1]), nn.ReLU())
        self.up = nn.Sequential(nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1), nn.ReLU(),
                                nn.ConvTranspose2d(32, input_shape[0], 4, stride=2, padding=1))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        out = self.up(self.dense(h).view(len(h), 64, *self.seed_hw))
        return out[:, :, : self.shape[1], : self.shape[2]]


def bernoulli_log_likelihood(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log p(x | logits) summed over pixels; x in [0, 1] (continuous intensities as soft targets)."""
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


def gaussian_log_density(z: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    return -0.5 * ((z - mean).pow(2) / log_var.exp() + log_var + LOG_2PI).sum(-1)


@dataclass(frozen=True)
class LatentVariableConfig:
    epochs: int = 0            # 0: 100 on inputs up to 16 pixels (digits), 30 otherwise
    batch_size: int = 100      # paper 002 §II
    lr: float = 1e-3
    latent: int = 0            # 0: 16 on 8x8 inputs, 64 otherwise
    hidden: int = 256
    dropout: float = 0.2
    importance_samples: int = 10   # K samples of q(z|x,c) per class for log p(x, c)
    eot_samples: int = 5


class LatentVariableClassifier(TrainableDefense):
    """Shared parts of GFZ and DFZ: the encoder q(z|x,y), the ELBO and the importance-sampled logits."""

    Config = LatentVariableConfig
    family = ""

    def __init__(self, info: DataInfo, config: LatentVariableConfig) -> None:
        super().__init__()
        self.config = config
        self.num_classes = info.num_classes
        self.latent = config.latent
        self.features, width = conv_features(tuple(info.input_shape), 16)
        self.encoder_head = nn.Sequential(nn.Linear(width + info.num_classes, config.hidden), nn.ReLU(),
                                          nn.Linear(config.hidden, 2 * config.latent))
        self.stochastic = True  # type: ignore[misc]
        self.eot_samples = config.eot_samples

    @classmethod
    def resolve_config(cls, config: LatentVariableConfig, info: DataInfo) -> LatentVariableConfig:
        import dataclasses

        if config.importance_samples < 1 or config.eot_samples < 1 or not 0 <= config.dropout < 1:
            raise AdvbenchError(f"{cls.family}: importance-samples and eot-samples must be >= 1, dropout in [0, 1)")
        small = max(info.input_shape[1:]) <= 16
        return dataclasses.replace(config, epochs=config.epochs or (100 if small else 30),
                                   latent=config.latent or (16 if small else 64))

    @classmethod
    def build(cls, info: DataInfo, config: LatentVariableConfig) -> "LatentVariableClassifier":
        return cls(info, config)

    def encode(self, features: torch.Tensor, onehot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_var = self.encoder_head(torch.cat([features, onehot], 1)).chunk(2, dim=1)
        return mean, log_var.clamp(-10, 5)

    def joint_terms(self, x: torch.Tensor, z: torch.Tensor, onehot: torch.Tensor,
                    repeats: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """log p(x | ...) and log p(y | ...) for the model's factorisation; each input of x
        stands for `repeats` consecutive rows of z and onehot."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """logits_c = log (1/K) sum_k p(x, c, z_k) / q(z_k | x, c), z_k ~ q(z | x, c)."""
        batch, classes, samples = len(x), self.num_classes, self.config.importance_samples
        features = self.features(x)
        onehot = torch.eye(classes, device=x.device).repeat(batch, 1)             # (B*C, C)
        mean, log_var = self.encode(features.repeat_interleave(classes, 0), onehot)
        mean, log_var = mean.repeat_interleave(samples, 0), log_var.repeat_interleave(samples, 0)
        z = mean + (0.5 * log_var).exp() * torch.randn_like(mean)                 # (B*C*K, L)
        onehot = onehot.repeat_interleave(samples, 0)
        log_px, log_py = self.joint_terms(x, z, onehot, repeats=classes * samples)
        log_pz = gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z))
        log_w = (log_px + log_py + log_pz - gaussian_log_density(z, mean, log_var)).view(batch, classes, samples)
        return torch.logsumexp(log_w, dim=2) - math.log(samples)

    def elbo(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-sample lower bound on log p(x, y) with one reparameterised sample and analytic KL."""
        onehot = F.one_hot(y, self.num_classes).float()
        mean, log_var = self.encode(self.features(x), onehot)
        z = mean + (0.5 * log_var).exp() * torch.randn_like(mean)
        log_px, log_py = self.joint_terms(x, z, onehot)
        kl = 0.5 * (mean.pow(2) + log_var.exp() - log_var - 1).sum(1)
        return log_px + log_py - kl

    def fit(self, data: Dataset, config: LatentVariableConfig, *, seed: int, device: torch.device,
            observer: Observer, checkpoints: CheckpointPlace | None = None) -> list[float]:
        generator = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        self.to(device)
        optimizer = torch.optim.Adam(self.parameters(), lr=config.lr)
        loop = EpochLoop(f"training {self.family}", config.epochs, observer, checkpoints, model=self, optimizer=optimizer,
                         generator=generator)
        for epoch in loop:
            self.train()
            total, seen = 0.0, 0
            for batch in torch.randperm(len(data.train_y), generator=generator).split(config.batch_size):
                x, y = data.train_x[batch].to(device), data.train_y[batch].to(device)
                loss = -self.elbo(x, y).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total, seen = total + loss.item() * len(y), seen + len(y)
            if not math.isfinite(total):
                raise AdvbenchError(f"{self.family} training diverged in epoch {epoch + 1}; lower --lr")
            self.eval()
            loop.report(f"negative ELBO {total / seen:.3f}")
        return loop.seconds


@register_defense("gfz", description="generative latent-variable classifier p(z)p(y|z)p(x|z,y) (paper 002); "
                                     "logits log p(x,c) by importance sampling (stochastic: EOT)")
class GenerativeClassifier(LatentVariableClassifier):
    family = "gfz"

    def __init__(self, info: DataInfo, config: LatentVariableConfig) -> None:
        super().__init__(info, config)
        self.label_given_z = nn.Sequential(nn.Linear(config.latent, config.hidden), nn.ReLU(),
                                           nn.Dropout(config.dropout), nn.Linear(config.hidden, info.num_classes))
        self.decoder = ImageDecoder(config.latent + info.num_classes, tuple(info.input_shape), config.hidden)

    def joint_terms(self, x: torch.Tensor, z: torch.Tensor, onehot: torch.Tensor,
                    repeats: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        log_px = bernoulli_log_likelihood(self.decoder(torch.cat([z, onehot], 1)), x.repeat_interleave(repeats, 0))
        log_py = (F.log_softmax(self.label_given_z(z), 1) * onehot).sum(1)
        return log_px, log_py


@register_defense("dfz", description="discriminative latent-variable classifier p(z)p(x|z)p(y|x,z) (paper 002); "
                                     "logits log p(x,c) by importance sampling (stochastic: EOT)")
class DiscriminativeClassifier(LatentVariableClassifier):
    family = "dfz"

    def __init__(self, info: DataInfo, config: LatentVariableConfig) -> None:
        super().__init__(info, config)
        self.label_features, width = conv_features(tuple(info.input_shape), 16)
        self.label_head = nn.Sequential(nn.Linear(width + config.latent, config.hidden), nn.ReLU(),
                                        nn.Dropout(config.dropout), nn.Linear(config.hidden, info.num_classes))
        self.decoder = ImageDecoder(config.latent, tuple(info.input_shape), config.hidden)

    def joint_terms(self, x: torch.Tensor, z: torch.Tensor, onehot: torch.Tensor,
                    repeats: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        log_px = bernoulli_log_likelihood(self.decoder(z), x.repeat_interleave(repeats, 0))
        features = self.label_features(x).repeat_interleave(repeats, 0)  # once per input, not per sample
        logits = self.label_head(torch.cat([features, z], 1))
        return log_px, (F.log_softmax(logits, 1) * onehot).sum(1)
