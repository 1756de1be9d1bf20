"""Test-time inference of ABS-like models: per class, the latent code that best explains x.

For every class k, l_k(x) = min_z ||x - G_k(z)||^2 + beta * cost(z), found from the best of
N fixed random prototypes (plus the encoder's proposal, for variational inference) and
refined by Adam. Everything is batched over samples and classes: one decoder call per step
on a (B, K, latent) tensor, never a Python loop over K or N.

- exact (ABS, Schott et al. 2019): optimise z; cost(z) = ||z||^2 / 2 (the KL of N(z, 1)) or,
  for adversarial autoencoders, -log D(z).
- variational (E-ABS, paper 004 Eq. 6): optimise the mean and variance of q(z) with one
  reparameterised sample per step; the estimate uses one sample of the optimum (stochastic).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

LatentCost = Callable[[torch.Tensor], torch.Tensor]   # z (..., L) -> cost (...)


@dataclass
class LatentFit:
    """The optimum of each class's inference: z* (B, K, L), G_k(z*) (B, K, C, H, W),
    squared reconstruction error and beta-weighted latent cost, each (B, K); `start` is
    what a later inference of a nearby input may continue from: the optimised point (or q(z)'s
    mean) and which starting point it came from (a prototype's index, -1 for the proposal)."""

    z: torch.Tensor
    images: torch.Tensor
    reconstruction: torch.Tensor
    latent_cost: torch.Tensor
    start: tuple[torch.Tensor, ...] = ()

    @property
    def loss(self) -> torch.Tensor:
        """l_k(x) = reconstruction + latent cost; classification is argmin_k."""
        return self.reconstruction + self.latent_cost

    @staticmethod
    def joined(rows: torch.Tensor, chosen: "LatentFit", others: "LatentFit") -> "LatentFit":
        """One batch's fit from the fit of its rows `rows` (a mask) and that of the other rows."""
        def join(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            out = a.new_empty((len(rows), *a.shape[1:]))
            out[rows], out[~rows] = a, b
            return out
        return LatentFit(join(chosen.z, others.z), join(chosen.images, others.images),
                         join(chosen.reconstruction, others.reconstruction),
                         join(chosen.latent_cost, others.latent_cost),
                         tuple(join(a, b) for a, b in zip(chosen.start, others.start)))


@dataclass
class InferenceSettings:
    prototypes: int = 8000
    steps: int = 50
    lr: float = 0.05
    chunk: int = 1000   # prototypes decoded per call when building the prototype images


def squared_error(x: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """||x - G_k||^2 for x (B, C, H, W) and images (B, K, C, H, W) -> (B, K)."""
    return (images - x.unsqueeze(1)).flatten(2).pow(2).sum(-1)


def gaussian_kl(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(log_var)) || N(0, 1)) over the last dimension."""
    return 0.5 * (mean.pow(2) + log_var.exp() - log_var - 1).sum(-1)


class LatentInference(nn.Module):
    """Runs a model's per-class latent optimisation. `decoders` maps (B, K, L) -> (B, K, C, H, W);
    `latent_cost` is the prior cost of a point (already without beta)."""

    def __init__(self, decoders: nn.Module, latent: int, k: int, latent_cost: LatentCost, *, beta: float,
                 settings: InferenceSettings, seed: int = 0) -> None:
        super().__init__()
        self.__dict__["decoders"] = decoders  # owned (and saved) by the model, not registered twice
        self.__dict__["point_cost"] = latent_cost
        self.k, self.beta, self.settings = k, beta, settings
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("prototypes", torch.randn(settings.prototypes, latent, generator=generator))
        self._cache: tuple[tuple, torch.Tensor] | None = None

    # ------------------------------------------------------------------ starting points
    def _fingerprint(self) -> tuple:
        state = [t._version for t in self.decoders.state_dict().values()]  # bumps on optimiser steps and loads
        return (self.prototypes.device, self.prototypes.data_ptr(), self.decoders.training, *state)

    @torch.no_grad()
    def prototype_images(self) -> torch.Tensor:
        """G_k(p_n) for every prototype and class, flattened: (N, K, D); cached until the weights change."""
        key = self._fingerprint()
        if self._cache is None or self._cache[0] != key:
            parts = [self.decoders(chunk.unsqueeze(1).expand(-1, self.k, -1)).flatten(2)
                     for chunk in self.prototypes.split(self.settings.chunk)]
            self._cache = (key, torch.cat(parts))
        return self._cache[1]

    @torch.no_grad()
    def best_prototypes(self, x: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per sample and class, the prototype with the lowest cost: z (B, K, L), cost and index (B, K)."""
        images = self.prototype_images()                       # (N, K, D)
        flat = x.flatten(1)                                    # (B, D)
        distances = (flat.pow(2).sum(1)[:, None, None] - 2 * torch.einsum("bd,nkd->bkn", flat, images)
                     + images.pow(2).sum(-1).T[None])          # (B, K, N)
        if beta:
            distances = distances + beta * self.point_cost(self.prototypes)
        cost, best = distances.min(-1)
        return self.prototypes[best], cost, best

    # ------------------------------------------------------------------ optimisation
    def _evaluate(self, x: torch.Tensor, z: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        images = self.decoders(z)
        reconstruction = squared_error(x, images)
        return images, reconstruction, beta * self.point_cost(z) if beta else torch.zeros_like(reconstruction)

    def exact(self, x: torch.Tensor, *, beta: float | None = None, proposal: torch.Tensor | None = None,
              start: tuple[torch.Tensor, ...] | None = None, steps: int | None = None) -> LatentFit:
        """ABS inference: argmin_z ||x - G_k(z)||^2 + beta cost(z) per class, keeping the best point seen.

        With `start` (a nearby input's `LatentFit.start`), each class whose best starting point
        (prototype or proposal) is the one the nearby input's inference started from continues
        from that inference's optimum: `steps` Adam steps for samples where every class did,
        the full number where one class's choice changed (the attack moved it to another basin)."""
        beta = self.beta if beta is None else beta
        x = x.detach()
        z, best_loss, choice, _ = self._best_start(x, proposal, beta)
        if start is None:
            z, best_loss = self._refine_points(x, z, best_loss, beta, self.settings.steps)
        else:
            same = choice == start[1]
            z = torch.where(same[..., None], start[0], z)
            with torch.no_grad():
                _, reconstruction, cost = self._evaluate(x, z, beta)
            best_loss = reconstruction + cost
            for rows, count in self._warm_schedule(same, steps):
                z[rows], best_loss[rows] = self._refine_points(x[rows], z[rows], best_loss[rows], beta, count)
        with torch.no_grad():
            images, reconstruction, cost = self._evaluate(x, z, beta)
        return LatentFit(z, images, reconstruction, cost, (z, choice))

    def _best_start(self, x: torch.Tensor, proposal: torch.Tensor | None, beta: float
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Per sample and class, the better of the best prototype and the proposal: the point, its
        loss, which it was (a prototype's index, -1 for the proposal) and where the proposal won."""
        z, loss, choice = self.best_prototypes(x, beta)
        if proposal is None:
            return z, loss, choice, None
        z, loss, from_proposal = self._prefer(x, z, loss, proposal, beta)
        return z, loss, torch.where(from_proposal, -1, choice), from_proposal

    def _warm_schedule(self, same: torch.Tensor, steps: int | None) -> list[tuple[torch.Tensor, int]]:
        """Rows whose every class kept its starting choice refine `steps` steps from the previous
        optimum; the others (a class's best start changed) run the full inference's steps."""
        steady = same.all(1)
        schedule = ((steady, self.settings.steps if steps is None else steps), (~steady, self.settings.steps))
        return [(rows, count) for rows, count in schedule if rows.any()]

    def _refine_points(self, x: torch.Tensor, z: torch.Tensor, best_loss: torch.Tensor, beta: float,
                       steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """`steps` Adam steps on z from `z`; the best point seen (the start included) and its loss."""
        best_z = z.clone()
        with torch.enable_grad():
            z = z.clone().requires_grad_(True)
            optimizer = torch.optim.Adam([z], lr=self.settings.lr)
            for _ in range(steps):
                _, reconstruction, cost = self._evaluate(x, z, beta)
                loss = reconstruction + cost
                with torch.no_grad():
                    better = loss < best_loss
                    best_z[better], best_loss = z[better], torch.where(better, loss, best_loss)
                (z.grad,) = torch.autograd.grad(loss.sum(), z)  # latent gradient only, never the weights'
                optimizer.step()
        with torch.no_grad():
            _, reconstruction, cost = self._evaluate(x, z.detach(), beta)
            better = reconstruction + cost < best_loss
            best_z[better], best_loss = z.detach()[better], torch.where(better, reconstruction + cost, best_loss)
        return best_z, best_loss

    def variational(self, x: torch.Tensor, proposal: tuple[torch.Tensor, torch.Tensor] | None = None,
                    kl_cost: bool = False, *, start: tuple[torch.Tensor, ...] | None = None,
                    steps: int | None = None) -> LatentFit:
        """E-ABS inference (paper 004 Eq. 6): optimise q(z) = N(mean, var) with one reparameterised
        sample per step from the best of the prototypes (unit variance) and the encoder's proposal.
        With `kl_cost` (models without a discriminator) the latent cost is KL(q || N(0, 1)).
        `start` and `steps` as in `exact`: a class that kept its starting choice refines the nearby
        input's optimised mean, from the log-variance its start gives (carried on, the variance
        would keep shrinking over an attack's steps and fit every class better than the defense's
        own inference does)."""
        x = x.detach()
        mean, _, choice, from_encoder = self._best_start(x, None if proposal is None else proposal[0].detach(),
                                                         self.beta)
        log_var = torch.zeros_like(mean)
        if proposal is not None:
            log_var = torch.where(from_encoder[..., None], proposal[1].detach().expand_as(mean), log_var)
        if start is None:
            mean, log_var = self._refine_distribution(x, mean, log_var, kl_cost, self.settings.steps)
        else:
            same = choice == start[1]
            mean = torch.where(same[..., None], start[0], mean)
            for rows, count in self._warm_schedule(same, steps):
                mean[rows], log_var[rows] = self._refine_distribution(x[rows], mean[rows], log_var[rows], kl_cost,
                                                                      count)
        with torch.no_grad():
            z, images, cost = self._sample_cost(mean, log_var, kl_cost)
        return LatentFit(z, images, squared_error(x, images), cost, (mean, choice))

    def _sample_cost(self, mean: torch.Tensor, log_var: torch.Tensor,
                     kl_cost: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z = mean + (0.5 * log_var).exp() * torch.randn_like(mean)
        images = self.decoders(z)
        cost = self.beta * (gaussian_kl(mean, log_var) if kl_cost else self.point_cost(z))
        return z, images, cost

    def _refine_distribution(self, x: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor, kl_cost: bool,
                             steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """`steps` Adam steps on q(z)'s mean and log-variance, one reparameterised sample each."""
        with torch.enable_grad():
            mean, log_var = mean.clone().requires_grad_(True), log_var.clone().requires_grad_(True)
            optimizer = torch.optim.Adam([mean, log_var], lr=self.settings.lr)
            for _ in range(steps):
                _, images, cost = self._sample_cost(mean, log_var, kl_cost)
                loss = (squared_error(x, images) + cost).sum()
                mean.grad, log_var.grad = torch.autograd.grad(loss, [mean, log_var])
                optimizer.step()
                with torch.no_grad():
                    log_var.clamp_(-10, 5)
        return mean.detach(), log_var.detach()

    def _prefer(self, x: torch.Tensor, z: torch.Tensor, loss: torch.Tensor, candidate: torch.Tensor,
                beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per sample and class, the candidate where its loss is lower: (z, loss, where the candidate won)."""
        with torch.no_grad():
            candidate = candidate.expand_as(z)
            _, reconstruction, cost = self._evaluate(x, candidate, beta)
            better = reconstruction + cost < loss
            return torch.where(better[..., None], candidate, z), torch.where(better, reconstruction + cost, loss), better


def certified_l2_bound(distances: torch.Tensor, true_loss: torch.Tensor, true_residual: torch.Tensor,
                       labels: torch.Tensor) -> torch.Tensor:
    """Paper 004 Eq. 7: eps* = min_{k != y} (d_k^2 - l_y*) / (2 d_k + 2 ||x - G_y(z_y*)||), floored at 0.

    `distances` (B, K) are d_k(x) = min_z ||x - G_k(z)||; `true_loss` (B,) is l_y*(x) and
    `true_residual` (B,) is ||x - G_y(z_y*)||. No L2 perturbation smaller than eps* changes
    the prediction from y (given exact minimisation)."""
    bounds = (distances.pow(2) - true_loss[:, None]) / (2 * distances + 2 * true_residual[:, None])
    bounds = bounds.scatter(1, labels[:, None], float("inf"))
    return bounds.min(1).values.clamp_min(0)


def looped_exact_inference(decoders: list[nn.Module], prototypes: torch.Tensor, x: torch.Tensor,
                           latent_cost: LatentCost, *, beta: float, settings: InferenceSettings) -> torch.Tensor:
    """The same exact inference one class and one sample at a time, as a naive implementation
    would write it (the reference that tests and `bench/eabs_inference.py` compare against).
    Returns l_k(x) as (B, K)."""
    losses = torch.empty(len(x), len(decoders))
    for k, decoder in enumerate(decoders):
        with torch.no_grad():
            images = torch.cat([decoder(chunk) for chunk in prototypes.split(settings.chunk)]).flatten(1)
            prototype_cost = beta * latent_cost(prototypes) if beta else torch.zeros(len(prototypes))
        for i in range(len(x)):
            target = x[i].flatten()
            with torch.no_grad():
                start = ((images - target).pow(2).sum(1) + prototype_cost).argmin()
            z = prototypes[start].clone()[None].requires_grad_(True)
            best_z, best_loss = z.detach().clone(), float("inf")
            optimizer = torch.optim.Adam([z], lr=settings.lr)
            for _ in range(settings.steps + 1):
                loss = (decoder(z).flatten() - target).pow(2).sum() + (beta * latent_cost(z).sum() if beta else 0)
                if loss.item() < best_loss:
                    best_z, best_loss = z.detach().clone(), loss.item()
                (z.grad,) = torch.autograd.grad(loss, z)
                optimizer.step()
            with torch.no_grad():
                losses[i, k] = (decoder(best_z).flatten() - target).pow(2).sum() + (
                    beta * latent_cost(best_z).sum() if beta else 0)
    return losses
