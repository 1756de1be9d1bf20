"""`abs` and `eabs`: class-conditional generative classifiers with latent-optimisation inference.

ABS (Schott et al. 2019) trains one VAE per class and classifies by the class whose
decoder best explains x after optimising its latent code. E-ABS (paper 004) adds three
extensions, each a switch here so the paper's Table 5 ablations can be trained:
- A (`--adversarial true`): adversarial autoencoders; the latent cost is -log D(z) of a
  latent discriminator instead of the KL term;
- D (`--discriminative true`): one shared encoder and the cross-entropy over the K class
  losses (weight gamma) at training time;
- V (mode `variational`): test-time optimisation of q(z)'s mean and variance (stochastic;
  attacked with EOT); mode `exact` optimises a point z.
`abs` defaults to no extension (mode exact); `eabs` to all three (mode variational).
So `abs --adversarial true` is A-ABS, and `abs:variational` V-ABS.

Attacks get the adaptive gradient of paper 004 Eq. 8 for free: logits are computed from
x and the optimum z* with z* detached, so d l_k / dx = 2 (x - G_k(z*)) — which is also the
exact gradient of the minimum l_k(x) = min_z f(x, z) (Danskin's theorem).

`name:mode:warm` (or `name:mode:N`) warm-starts the inference under attack
(`WarmStartedInference`): an attack step moves x a little, so a class whose best starting
point (prototype or encoder proposal) is unchanged continues from the previous step's optimum
for a few Adam steps; a sample where some class's best start changed runs the full number of
steps, and one that moved far (a random restart) gets the full inference. Not the default:
bench/eabs_attack.py measured a first version that always continued (about 5x cheaper) 8
points weaker, because the attack spoils the full inference's choice of start and a pure warm
chain never sees it; this one (about 2x cheaper) left 74.5% against the full inference's
70.0% [63.3, 75.9] on 200 digits (pgd-l2 80x5, EOT 5). Every adversarial is judged by the full
inference either way.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data import DataInfo, Dataset
from ..errors import AdvbenchError
from ..progress import Observer
from ..registry import register_defense
from .abs_networks import Decoders, Discriminator, Encoder, architecture_for
from .base import Defense, TrainableDefense
from .training import CheckpointPlace, EpochLoop
from .latent_inference import InferenceSettings, LatentFit, LatentInference, certified_l2_bound, squared_error

MODES = ("exact", "variational")
FULL_INFERENCE = "full"       # mode argument (the default): attack gradients from the full inference at every step
WARM_INFERENCE = "warm"       # mode argument: warm-started inference under attack, WARM_STEPS per attack step
WARM_STEPS = 4                # Adam steps per attack step when the inference is warm-started
WARM_RADIUS = 0.1             # an input counts as "moved little" within this L2 fraction of its norm


@dataclass(frozen=True)
class ABSConfig:
    epochs: int = 0             # 0: 60 on inputs up to 16 pixels (digits), 30 otherwise
    batch_size: int = 64
    lr: float = 1e-3
    beta: float = 0.0           # latent cost weight (KL or -log D); 0: 1 (paper), but 0.1 for abs on 8x8 inputs
    gamma: float = 10.0         # weight of the discriminative loss (with --discriminative)
    adversarial: bool = False   # A: adversarial autoencoder (latent discriminator)
    discriminative: bool = False  # D: shared encoder + discriminative cross-entropy
    noise_std: float = -1.0     # Gaussian augmentation; -1: 0.2 for grey images, 0.01 for colour (paper 004)
    prototypes: int = 0         # random starting points per class; 0: 8000 (2000 for 32x32 colour)
    inference_steps: int = 0    # Adam steps refining the best start; 0: 50 (paper), 20 on 8x8 inputs (CPU budget)
    inference_lr: float = 0.05
    eot_samples: int = 5        # samples averaged by EOT in the (stochastic) variational mode
    mode: str = "exact"         # default inference: exact or variational


@dataclass(frozen=True)
class EABSConfig(ABSConfig):
    adversarial: bool = True
    discriminative: bool = True
    mode: str = "variational"


@register_defense("abs", description="ABS: one VAE per class, latent-optimisation inference (Schott et al.; "
                                     "paper 004 baseline); modes exact, variational; switches --adversarial, "
                                     "--discriminative for the Table 5 ablations")
class AnalysisBySynthesis(TrainableDefense):
    """Class-conditional generative classifier: logits are -l_k(x), the per-class inference loss."""

    Config = ABSConfig
    modes = MODES
    norm = "l2"

    def __init__(self, info: DataInfo, config: ABSConfig) -> None:
        super().__init__()
        arch = architecture_for(info.name, tuple(info.input_shape))
        self.config = config
        self.num_classes = k = info.num_classes
        self.encoder = Encoder(arch, tuple(info.input_shape), 1 if config.discriminative else k)
        self.decoders = Decoders(arch, tuple(info.input_shape), k)
        self.discriminator = Discriminator(arch) if config.adversarial else None
        settings = InferenceSettings(prototypes=config.prototypes, steps=config.inference_steps,
                                     lr=config.inference_lr)
        self.inference = LatentInference(self.decoders, arch.latent, k, self.point_cost, beta=config.beta,
                                         settings=settings)
        self.select_mode(config.mode)

    @classmethod
    def resolve_config(cls, config: ABSConfig, info: DataInfo) -> ABSConfig:
        if config.mode not in MODES:
            raise AdvbenchError(f"{cls.name()}: mode must be one of {', '.join(MODES)}")
        if config.beta < 0 or config.gamma < 0 or config.inference_steps < 0 or config.prototypes < 0 or config.eot_samples < 1:
            raise AdvbenchError(f"{cls.name()}: beta, gamma and inference-steps must be >= 0, eot-samples >= 1")
        architecture_for(info.name, tuple(info.input_shape))  # unsupported shapes fail before training
        small = max(info.input_shape[1:]) <= 16
        colour = info.input_shape[0] == 3
        # with beta 1 the KL term collapses ABS's per-class VAEs on 8x8 digits (the decoders
        # ignore z; 89.7% clean accuracy against 98.1% with 0.1); -log D (E-ABS) does not
        collapses = small and not config.adversarial
        return dataclasses.replace(
            config,
            beta=config.beta or (0.1 if collapses else 1.0),
            epochs=config.epochs or (60 if small else 30),
            noise_std=config.noise_std if config.noise_std >= 0 else (0.01 if colour else 0.2),
            prototypes=config.prototypes or (2000 if colour else 8000),
            inference_steps=config.inference_steps or (20 if small else 50),
        )

    @classmethod
    def name(cls) -> str:
        return "eabs" if cls.Config is EABSConfig else "abs"

    @classmethod
    def build(cls, info: DataInfo, config: ABSConfig) -> "AnalysisBySynthesis":
        return cls(info, config)

    # ------------------------------------------------------------------ inference
    def select_mode(self, mode: str | None, argument: str | None = None) -> None:
        """`exact` or `variational`; the argument `full` (default), `warm` or N sets the inference under attack."""
        Defense.select_mode(self, mode, None)
        variational = self.mode == "variational"
        self.stochastic = variational  # per instance: the mode decides
        self.eot_samples = self.config.eot_samples if variational else 1
        self.eot_in_one_batch = True  # each input's noise is its own: EOT's passes run as one batch
        if argument in (None, FULL_INFERENCE):
            self.warm_steps = 0
        elif argument == WARM_INFERENCE:
            self.warm_steps = WARM_STEPS
        elif argument.isdigit() and int(argument) > 0:
            self.warm_steps = int(argument)
        else:
            raise AdvbenchError(f"{self.name()}: the mode argument is {FULL_INFERENCE!r} (the full inference at every "
                                f"attack step, the default), {WARM_INFERENCE!r} or a number of warm-started steps, "
                                f"not {argument!r}")
        self.mode_argument = argument

    def point_cost(self, z: torch.Tensor) -> torch.Tensor:
        """Latent cost of a point: -log D(z) with a discriminator, else ||z||^2 / 2 (KL of N(z, 1))."""
        if self.discriminator is not None:
            return self.discriminator.neg_log_prob_prior(z)
        return 0.5 * z.pow(2).sum(-1)

    def fit_latents(self, x: torch.Tensor, start: tuple[torch.Tensor, ...] | None = None,
                    steps: int | None = None) -> LatentFit:
        """The optimum z* of every class for x, by the selected inference (continued from a
        nearby input's `LatentFit.start` for `steps` steps, with `start`)."""
        if self.mode == "variational":
            return self.inference.variational(x, self.encoder(x), kl_cost=self.discriminator is None, start=start,
                                              steps=steps)
        return self.inference.exact(x, start=start, steps=steps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits -l_k(x), differentiable in x through the reconstruction term only (Eq. 8)."""
        return self.logits(x, self.fit_latents(x))

    @staticmethod
    def logits(x: torch.Tensor, fit: LatentFit) -> torch.Tensor:
        return -(squared_error(x, fit.images.detach()) + fit.latent_cost.detach())

    def gradient_model(self) -> nn.Module:
        """The model itself (the full inference at every attack step), or with `name:mode:warm`
        a fresh warm-started view per call (the runner asks once per batch)."""
        return WarmStartedInference(self, self.warm_steps) if self.warm_steps else self

    @torch.no_grad()
    def certified_radius(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Paper 004 Eq. 7 per sample (0 when misclassified), from exact inference: d_k by
        minimising the reconstruction error alone, l_y* with the latent cost. The bound holds
        only as far as the inference finds the true minima (d_k found by search is an upper
        bound on the true distance, so the radius is an estimate, as in the paper)."""
        fit = self.inference.exact(x)
        distances = self.inference.exact(x, beta=0.0).reconstruction.clamp_min(0).sqrt()
        true_loss = fit.loss.gather(1, labels[:, None]).squeeze(1)
        residual = fit.reconstruction.gather(1, labels[:, None]).squeeze(1).clamp_min(0).sqrt()
        radius = certified_l2_bound(distances, true_loss, residual, labels)
        return torch.where(fit.loss.argmin(1) == labels, radius, torch.zeros_like(radius))

    # ------------------------------------------------------------------ training
    def fit(self, data: Dataset, config: ABSConfig, *, seed: int, device: torch.device, observer: Observer,
            checkpoints: CheckpointPlace | None = None) -> list[float]:
        """Algorithm 1 of paper 004 with the A/D switches (all off: one beta-VAE per class)."""
        generator = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        self.to(device)
        autoencoder_params = list(self.encoder.parameters()) + list(self.decoders.parameters())
        optimizer = torch.optim.Adam(autoencoder_params, lr=config.lr)
        disc_optimizer = (torch.optim.Adam(self.discriminator.parameters(), lr=config.lr)
                          if self.discriminator is not None else None)
        steps = math.ceil(len(data.train_y) / config.batch_size)
        optimizers = {"optimizer": optimizer, **({"disc_optimizer": disc_optimizer} if disc_optimizer else {})}
        loop = EpochLoop(f"training {self.name()}", config.epochs, observer, checkpoints, model=self, generator=generator,
                         **optimizers)
        for epoch in loop:
            self.train()
            totals = torch.zeros(4)
            for batch in torch.randperm(len(data.train_y), generator=generator).split(config.batch_size):
                x, y = data.train_x[batch].to(device), data.train_y[batch].to(device)
                if config.noise_std:
                    x = (x + config.noise_std * torch.randn_like(x)).clamp(*data.info.bounds)
                terms, z = self._autoencoder_loss(x, y, config)
                optimizer.zero_grad(set_to_none=True)
                sum(terms).backward()
                optimizer.step()
                disc_loss = torch.zeros(())
                if disc_optimizer is not None:
                    disc_loss = self._discriminator_loss(z.detach(), config.beta)
                    disc_optimizer.zero_grad(set_to_none=True)
                    disc_loss.backward()
                    disc_optimizer.step()
                totals += torch.stack([*(t.detach().cpu() for t in terms), disc_loss.detach().cpu()])
            if not torch.isfinite(totals).all():
                raise AdvbenchError(f"{self.name()} training diverged in epoch {epoch + 1}; lower --lr")
            rec, prior, disc, d_loss = (totals / steps).tolist()
            loop.report(f"reconstruction {rec:.3f}, latent {prior:.3f}, discriminative {disc:.3f}, "
                        f"discriminator {d_loss:.3f}")
        self.eval()
        return loop.seconds

    def _autoencoder_loss(self, x: torch.Tensor, y: torch.Tensor,
                          config: ABSConfig) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Reconstruction (by the true class's decoder), latent cost and discriminative terms."""
        mean, log_var = self.encoder(x)                           # (B, 1 or K, L)
        if mean.shape[1] > 1:                                     # class-specific encoders: the true class's
            pick = y[:, None, None].expand(-1, 1, mean.shape[-1])
            mean, log_var = mean.gather(1, pick), log_var.gather(1, pick)
        mean, log_var = mean.squeeze(1), log_var.squeeze(1)
        z = mean + (0.5 * log_var).exp() * torch.randn_like(mean)
        losses = squared_error(x, self.decoders(z.unsqueeze(1).expand(-1, self.num_classes, -1)))  # (B, K)
        reconstruction = losses.gather(1, y[:, None]).mean()
        if self.discriminator is not None:
            latent = config.beta * self.discriminator.neg_log_prob_prior(z).mean()
        else:
            latent = config.beta * (0.5 * (mean.pow(2) + log_var.exp() - log_var - 1).sum(-1)).mean()
        discriminative = (config.gamma * F.cross_entropy(-losses, y) if config.discriminative
                          else torch.zeros((), device=x.device))
        return [reconstruction, latent, discriminative], z

    def _discriminator_loss(self, z: torch.Tensor, beta: float) -> torch.Tensor:
        """D learns to tell prior samples (label 1) from encoded latents (label 0)."""
        assert self.discriminator is not None
        prior = torch.randn_like(z)
        logits = self.discriminator(torch.cat([prior, z]))
        targets = torch.cat([torch.ones(len(z)), torch.zeros(len(z))]).to(z.device)
        return beta * F.binary_cross_entropy_with_logits(logits, targets)


class WarmStartedInference(nn.Module):
    """The attack's view of an ABS-like model: an input that moved little since the previous call
    of the same batch shape (one attack step) continues from that call's optimum with `steps`
    refinement steps; the others (first calls, random restarts, new batches) get the full
    inference. Holds state, so one view serves one batch of one attack."""

    def __init__(self, model: AnalysisBySynthesis, steps: int, radius: float = WARM_RADIUS) -> None:
        super().__init__()
        self.model, self.steps, self.radius = model, steps, radius
        self.stochastic = model.stochastic
        self._previous: dict[tuple[int, ...], tuple[torch.Tensor, tuple[torch.Tensor, ...]]] = {}
        self.train(model.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        key = tuple(x.shape)
        fit = self._fit(x, self._previous.get(key))
        self._previous[key] = (x.detach().clone(), tuple(part.detach() for part in fit.start))
        return self.model.logits(x, fit)

    def _fit(self, x: torch.Tensor, previous: tuple[torch.Tensor, tuple[torch.Tensor, ...]] | None) -> LatentFit:
        if previous is None:
            return self.model.fit_latents(x)
        before, start = previous
        near = (x - before).flatten(1).norm(dim=1) <= self.radius * before.flatten(1).norm(dim=1)
        if near.all():
            return self.model.fit_latents(x, start, self.steps)
        if not near.any():
            return self.model.fit_latents(x)
        return LatentFit.joined(near, self.model.fit_latents(x[near], tuple(s[near] for s in start), self.steps),
                                self.model.fit_latents(x[~near]))


@register_defense("eabs", description="E-ABS (paper 004): shared encoder, K decoders, latent discriminator, "
                                      "discriminative loss, variational inference (stochastic: EOT)")
class EfficientABS(AnalysisBySynthesis):
    """ABS with all three extensions of paper 004 (A, D, V) on by default."""

    Config = EABSConfig
