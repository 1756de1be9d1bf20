"""The Defense interface every evaluated model implements.

One interface covers plain classifiers, classifiers with a reject option (detectors,
generative classifiers), stochastic inference (attacked with EOT), and defenses whose
honest attack needs its own differentiable surrogate or loss. Attacks and the runner
only ever talk to this interface; they never ask which defense they hold.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar

import torch
from torch import nn

from ..errors import AdvbenchError
from .weights import construct, load_weights


@dataclass
class Prediction:
    """What a defense says about a batch: logits, labels and (optionally) a reject score."""

    logits: torch.Tensor
    labels: torch.Tensor
    reject_score: torch.Tensor | None = None
    certified_l2: torch.Tensor | None = None  # the defense's proven radius per sample, when it has one


class Defense(nn.Module):
    """Base class: subclasses implement `forward(x) -> logits`.

    Optional capabilities, each with a safe default:
    - `reject_score(x, logits)`: higher means "more likely adversarial"; metrics need a
      continuous score (ROC/AUC), with `reject_threshold` as the operating point.
    - `stochastic = True` with `eot_samples`: predictions and gradients are averaged over
      that many forward passes (expectation over transformation); `eot_in_one_batch = True`
      when each input's randomness is drawn independently, so the passes can run as one
      batch of copies (one call instead of `eot_samples`).
    - `gradient_model()`: the differentiable x -> logits function gradient attacks use,
      e.g. an adaptive gradient that skips an inner optimisation.
    - `certified_radius(x, labels)`: a provable L2 lower bound on the adversarial distance.
    - `attack_loss()`: a per-sample loss `(logits, labels) -> loss` that gradient attacks
      maximise instead of cross-entropy, for defenses whose honest attack needs one.
    - `modes`: named variants of one checkpoint, selected as `name:mode`.
    - `load(info, weights)`: how a registered class becomes a ready model by name
      (default: construct it and load the weights file).

    A plugin needs only `forward` (and weights): `advbench attack NAME --weights FILE`.
    """

    description: ClassVar[str] = ""
    modes: ClassVar[tuple[str, ...]] = ()
    stochastic: bool = False  # a class default; an instance may change it (e.g. per inference mode)

    def __init__(self) -> None:
        super().__init__()
        self.stochastic = type(self).stochastic
        self.eot_samples: int = 1
        self.eot_in_one_batch = False
        self.reject_threshold: float | None = None
        self.mode: str | None = None
        self.card: dict[str, Any] | None = None  # the zoo card, when loaded from the zoo

    def reject_score(self, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor | None:
        return None

    def gradient_model(self) -> nn.Module:
        return self

    def certified_radius(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | None:
        """Per-sample L2 radius within which the defense proves its prediction cannot change
        (0 where it cannot prove anything), or None for defenses without a bound."""
        return None

    def attack_loss(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None:
        return None

    def attack_surfaces(self) -> dict[str, nn.Module]:
        """Named differentiable parts (e.g. a detector's classifier and detectors) for attacks
        written against this family of defenses; generic attacks ignore them."""
        return {}

    def select_mode(self, mode: str | None, argument: str | None = None) -> None:
        """Switch to a named inference mode (`name:mode[:argument]` in a defense spec)."""
        if mode is None:
            return
        if mode not in self.modes:
            offered = ", ".join(self.modes) if self.modes else "none"
            raise AdvbenchError(f"defense {type(self).__name__} has no mode {mode!r} (modes: {offered})")
        if argument is not None:
            raise AdvbenchError(f"defense {type(self).__name__}: mode {mode} takes no argument (got {argument!r})")
        self.mode = mode

    @classmethod
    def load(cls, info: Any, weights: Path | None) -> "Defense":
        """A ready model of this class for data `info`: constructed with the facts its
        `__init__` asks for by name (`input_shape`, `num_classes`, `info`), then the weights
        file loaded. Pre-trained wrappers override this to fetch their own weights."""
        model = construct(cls, info)
        if weights is not None:
            load_weights(model, weights)
        return model

    @torch.no_grad()
    def predict(self, x: torch.Tensor, samples: int | None = None) -> Prediction:
        """Labels from logits averaged over EOT samples when the defense is stochastic."""
        n = (samples or self.eot_samples) if self.stochastic else 1
        logits = ExpectationOverTransformation(self, n, batched=self.eot_in_one_batch)(x)
        return Prediction(logits, logits.argmax(dim=1), self.reject_score(x, logits))


class ModelDefense(Defense):
    """A plain classifier: any nn.Module that maps inputs to logits."""

    description = "a plain classifier (user model)"

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class ExpectationOverTransformation(nn.Module):
    """Averages a stochastic model's logits over `samples` passes, so gradients are averaged too;
    `batched` runs the passes as one call on `samples` stacked copies of the batch (for models
    whose randomness is drawn per input: the same distribution, fewer and larger calls)."""

    def __init__(self, model: nn.Module, samples: int, batched: bool = False) -> None:
        super().__init__()
        self.model = model
        self.samples = samples
        self.batched = batched
        self.train(model.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.samples == 1:
            return self.model(x)
        if self.batched:
            copies = x.repeat(self.samples, *([1] * (x.dim() - 1)))
            return self.model(copies).unflatten(0, (self.samples, len(x))).mean(0)
        return torch.stack([self.model(x) for _ in range(self.samples)]).mean(0)


def state_digest(model: nn.Module) -> str:
    """sha256 of a model's parameters and buffers (names, shapes, dtypes and values): names
    the exact weights a run attacked, and shows whether an attack changed them."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(value.shape)}:{value.dtype}".encode())
        digest.update(value.view(-1).view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()


class TrainableDefense(Defense):
    """A defense advbench can train and store in the zoo.

    Subclasses declare a `Config` dataclass of hyperparameters (stored in the zoo
    card), `build(info, config)` for an untrained model, and `fit(...)`.
    """

    Config: ClassVar[type]
    norm: ClassVar[str | None] = None

    @classmethod
    def resolve_config(cls, config: Any, info: Any) -> Any:
        """Fill dataset-dependent defaults (e.g. epsilon by input shape) before training."""
        return config

    @classmethod
    def build(cls, info: Any, config: Any) -> "TrainableDefense":
        raise NotImplementedError

    @classmethod
    def load(cls, info: Any, weights: Path | None) -> "Defense":
        """With a weights file instead of a zoo entry: the default architecture for `info`."""
        model = cls.build(info, cls.resolve_config(cls.Config(), info))
        if weights is not None:
            load_weights(model, weights)
        return model

    def fit(self, data: Any, config: Any, *, seed: int, device: torch.device, observer: Any) -> list[float]:
        """Train in place; returns seconds per epoch for the zoo card."""
        raise NotImplementedError
