"""`pgn`: adversarial training against a perturbation generator network (paper 003).

A classifier F and a generator G(grad_x F, x, y) play the minimax game
    min_F max_G  CE(F(x_adv), y) - c_L ||x_adv - x||^2,
with x_adv = lo + (hi - lo) * (tanh(atanh(2u - 1) + G) + 1) / 2 for u = (x - lo) / (hi - lo),
so adversarial inputs stay inside the data bounds without clipping (paper 003 Eq. 5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data import DataInfo, Dataset
from ..errors import AdvbenchError
from ..norms import Norm
from ..progress import Observer
from ..registry import register_defense
from .base import TrainableDefense
from .training import CheckpointPlace, EpochLoop
from .networks import classifier_for_shape

ATANH_LIMIT = 1 - 1e-6


def tanh_perturb(x: torch.Tensor, raw: torch.Tensor, bounds: tuple[float, float]) -> torch.Tensor:
    """Paper 003 Eq. 5: add `raw` in atanh space, so the result lies strictly inside the bounds."""
    low, high = bounds
    unit = ((x - low) / (high - low) * 2 - 1).clamp(-ATANH_LIMIT, ATANH_LIMIT)
    return low + (high - low) * (torch.tanh(torch.atanh(unit) + raw) + 1) / 2


def gradient_image(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """grad_x CE(F(x), y), scaled to unit L2 norm per sample (the generator's view of F)."""
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(x), y, reduction="sum"), x)
    norms = Norm.L2.of(grad).clamp_min(1e-12).view(-1, *([1] * (x.dim() - 1)))
    return (grad / norms).detach()


class PerturbationGenerator(nn.Module):
    """Paper 003 Table 1 generator adapted to the input shape: the label goes through dense
    layers and two stride-2 up-convolutions (concatenated with the label at each stage),
    then is concatenated with the image and the gradient image for two more convolutions."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, width: int) -> None:
        super().__init__()
        channels, height, width_px = input_shape
        self.shape = (channels, height, width_px)
        self.num_classes = num_classes
        self.seed_hw = (math.ceil(height / 4), math.ceil(width_px / 4))
        self.width = width
        self.dense1 = nn.Linear(num_classes, 8 * width)
        self.dense2 = nn.Linear(8 * width + num_classes, width * self.seed_hw[0] * self.seed_hw[1])
        self.up1 = nn.ConvTranspose2d(width + num_classes, width, 3, stride=2, padding=1, output_padding=1)
        self.up2 = nn.ConvTranspose2d(width + num_classes, width, 3, stride=2, padding=1, output_padding=1)
        self.mix = nn.Conv2d(width + 2 * channels, width, 3, padding=1)
        self.out = nn.Conv2d(width, channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)  # start from no perturbation: a stable first round of the game
        nn.init.zeros_(self.out.bias)

    def _with_label(self, features: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        label_map = onehot[:, :, None, None].expand(-1, -1, *features.shape[2:])
        return torch.cat([features, label_map], dim=1)

    def forward(self, grad: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        onehot = F.one_hot(y, self.num_classes).float()
        h = F.relu(self.dense1(onehot))
        h = F.relu(self.dense2(torch.cat([h, onehot], dim=1))).view(len(x), self.width, *self.seed_hw)
        h = F.relu(self.up1(self._with_label(h, onehot)))
        h = F.relu(self.up2(self._with_label(h, onehot)))
        h = h[:, :, : self.shape[1], : self.shape[2]]
        h = F.relu(self.mix(torch.cat([h, x, grad], dim=1)))
        return self.out(h)


@dataclass(frozen=True)
class PGNConfig:
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    generator_lr: float = 1e-3
    c_l: float = 0.5            # weight of ||x_adv - x||^2; 0.5 gives perturbations of L2 ~1 on digits
    adv_coefficient: float = 1.0
    ema_decay: float = 0.0      # exponential moving average of the classifier's weights (paper: 0.998)
    width: int = 0              # generator width; 0: 32 for inputs up to 16 pixels, else 128


@register_defense("pgn", description="adversarial training against a perturbation generator network (paper 003), --c-l")
class PerturbationGeneratorTraining(TrainableDefense):
    """Classifier trained against a generator of perturbations (paper 003); keeps the generator for the `pgn` attack."""

    Config = PGNConfig
    norm = "l2"

    def __init__(self, info: DataInfo, config: PGNConfig) -> None:
        super().__init__()
        width = config.width or (32 if max(info.input_shape[1:]) <= 16 else 128)
        self.net = classifier_for_shape(info.input_shape, info.num_classes)
        self.generator = PerturbationGenerator(tuple(info.input_shape), info.num_classes, width)

    @classmethod
    def build(cls, info: DataInfo, config: PGNConfig) -> "PerturbationGeneratorTraining":
        if config.c_l < 0 or config.adv_coefficient < 0 or not 0 <= config.ema_decay < 1:
            raise AdvbenchError("pgn: c-l and adv-coefficient must be >= 0 and ema-decay in [0, 1)")
        return cls(info, config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def perturb(self, classifier: nn.Module, x: torch.Tensor, y: torch.Tensor, bounds: tuple[float, float],
                scale: float = 1.0) -> torch.Tensor:
        """One generator pass against `classifier` (which need not be this model's own)."""
        return tanh_perturb(x, scale * self.generator(gradient_image(classifier, x, y), x, y), bounds)

    def fit(self, data: Dataset, config: PGNConfig, *, seed: int, device: torch.device, observer: Observer,
            checkpoints: CheckpointPlace | None = None) -> list[float]:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        generator = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        self.to(device)
        bounds = data.info.bounds
        opt_f = torch.optim.Adam(self.net.parameters(), lr=config.lr)
        opt_g = torch.optim.Adam(self.generator.parameters(), lr=config.generator_lr)
        ema = (AveragedModel(self.net, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
               if config.ema_decay else None)
        loop = EpochLoop("training pgn", config.epochs, observer, checkpoints, model=self, opt_f=opt_f, opt_g=opt_g,
                         generator=generator, **({"ema": ema} if ema is not None else {}))
        for epoch in loop:
            self.train()
            totals = torch.zeros(3)
            for batch in torch.randperm(len(data.train_y), generator=generator).split(config.batch_size):
                x, y = data.train_x[batch].to(device), data.train_y[batch].to(device)
                grad = gradient_image(self.net, x, y)
                # generator step: maximise CE(F(x_adv), y) - c_L ||x_adv - x||^2
                x_adv = tanh_perturb(x, self.generator(grad, x, y), bounds)
                size = (x_adv - x).flatten(1).pow(2).sum(1)
                gain = F.cross_entropy(self.net(x_adv), y, reduction="none") - config.c_l * size
                opt_g.zero_grad(set_to_none=True)
                (-gain.mean()).backward()
                opt_g.step()
                # classifier step on clean and generated inputs
                x_adv = x_adv.detach()
                loss = F.cross_entropy(self.net(x), y) + config.adv_coefficient * F.cross_entropy(self.net(x_adv), y)
                opt_f.zero_grad(set_to_none=True)
                loss.backward()
                opt_f.step()
                if ema is not None:
                    ema.update_parameters(self.net)
                totals += torch.tensor([loss.item(), gain.mean().item(), size.sqrt().mean().item()])
            if not torch.isfinite(totals).all():
                raise AdvbenchError(f"pgn training diverged in epoch {epoch + 1} (non-finite loss); lower the learning rates")
            n = math.ceil(len(data.train_y) / config.batch_size)
            loop.report(f"classifier loss {totals[0] / n:.4f}, generator gain {totals[1] / n:.4f}, "
                        f"mean L2 {totals[2] / n:.3f}")
        if ema is not None:
            self.net.load_state_dict(ema.module.state_dict())
        self.eval()
        return loop.seconds
