"""`gat`: K robust one-vs-rest detectors by asymmetric adversarial training (papers 000/001).

Detector d_k is trained (paper 001 Eq. 5) on clean class-k inputs as positives and on
out-of-class inputs perturbed by PGD to *raise* d_k's logit as negatives, with binary
cross-entropy on logits. All K detectors train together in one stacked network.

Modes (`gat:generative`, `gat:integrated`, `gat:ovr`; optionally `gat:generative:T`):
- generative: classify by argmax_k z_k(x), reject when max_k z_k(x) < T;
- integrated: a classifier f routes x to d_{f(x)}, reject when z_{f(x)}(x) < T;
- ovr: argmax_k z_k(x) without a reject option.
T defaults to the threshold accepting 95% of clean validation inputs.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data import DataInfo, Dataset
from ..errors import AdvbenchError
from ..norms import Norm, parse_norm
from ..progress import Observer
from ..registry import register_defense
from .base import TrainableDefense
from .networks import classifier_for_shape
from .stacked import StackedNetwork
from .training import CheckpointPlace, EpochLoop, KeptValues, train_classifier

MODES = ("generative", "integrated", "ovr")
TPR_TARGET = 0.95
# paper 001 Table 1 (MNIST, 28x28): (norm, eps) -> (train steps, step size, validation steps)
TABLE_1 = {("l2", 2.5): (100, 0.1, 200), ("l2", 5.0): (200, 0.1, 200),
           ("linf", 0.3): (100, 0.01, 200), ("linf", 0.5): (100, 0.01, 200)}
DEFAULT_EPS = {"linf": 0.3, "l2": 2.5}


@dataclass(frozen=True)
class GATConfig:
    epochs: int = 0              # 0: 100 on inputs up to 16 pixels (digits), 30 otherwise
    batch_size: int = 32         # positives per detector per step, and as many adversarial negatives
    lr: float = 1e-3
    norm: str = "linf"
    eps: float = 0.0             # 0: 0.3 (Linf) or 2.5 (L2)
    steps: int = 0               # 0: paper 001 Table 1 on 28x28 inputs, 20 on digits
    step_size: float = 0.0       # 0: Table 1, else 2.5 * eps / steps
    step_rule: str = "adam"      # adam (as the authors on MNIST) or sign (normalized steepest descent)
    val_steps: int = 0           # validation attack steps; 0: Table 1 on 28x28, else the training steps
    validation: float = 0.1      # fraction of the training set held out to pick each detector's best epoch
    val_samples: int = 100       # validation inputs per detector and epoch (positives and negatives each)
    init_from_classifier: bool = False  # paper 001 A.2: start d_k from the trained classifier's logit k
    classifier_epochs: int = 20  # the integrated mode's classifier f
    quick: bool = False          # CPU preset: a quarter of the steps (at least 5) and of the epochs


def attack_detectors(net: StackedNetwork, x: torch.Tensor, *, eps: float, norm: Norm, steps: int, step_size: float,
                     step_rule: str, bounds: tuple[float, float], random_init: bool = True) -> torch.Tensor:
    """PGD on inputs (B, K, ...) raising each detector's logit on its own input (the
    negatives' attacker in Eq. 5, and the detector attack of the robustness tests)."""
    trainable = [p for p in net.parameters() if p.requires_grad]
    for p in trainable:  # only input gradients are needed: skip weight gradients (about 10% faster)
        p.requires_grad_(False)
    try:
        return _attack_detectors(net, x, eps=eps, norm=norm, steps=steps, step_size=step_size, step_rule=step_rule,
                                 bounds=bounds, random_init=random_init)
    finally:
        for p in trainable:
            p.requires_grad_(True)


def _attack_detectors(net: StackedNetwork, x: torch.Tensor, *, eps: float, norm: Norm, steps: int, step_size: float,
                      step_rule: str, bounds: tuple[float, float], random_init: bool) -> torch.Tensor:
    from ..attacks.engine import project, random_start, steepest_direction

    low, high = bounds
    batch, k = x.shape[:2]
    flat_shape = (batch * k, *x.shape[2:])
    flat_x = x.reshape(flat_shape)
    start = random_start(flat_x, eps, norm) if random_init else torch.zeros_like(flat_x)
    delta = ((flat_x + start).clamp(low, high) - flat_x).requires_grad_(True)
    optimizer = torch.optim.Adam([delta], lr=step_size, maximize=True) if step_rule == "adam" else None
    for _ in range(steps):
        logits = net((flat_x + delta).reshape(x.shape))
        (grad,) = torch.autograd.grad(logits.sum(), delta)
        with torch.no_grad():
            if optimizer is not None:
                delta.grad = grad
                optimizer.step()
            else:
                delta += step_size * steepest_direction(grad, norm)
            delta.copy_(project(delta, eps, norm))
            delta.copy_((flat_x + delta).clamp(low, high) - flat_x)
    return (flat_x + delta).detach().reshape(x.shape)


def asymmetric_loss(positive_logits: torch.Tensor, negative_logits: torch.Tensor) -> torch.Tensor:
    """Paper 001 Eq. 5 with L = binary cross-entropy on logits: positives labelled 1,
    (adversarial) negatives labelled 0; mean over both halves and all detectors."""
    return 0.5 * (F.binary_cross_entropy_with_logits(positive_logits, torch.ones_like(positive_logits))
                  + F.binary_cross_entropy_with_logits(negative_logits, torch.zeros_like(negative_logits)))


def detector_aucs(positive_logits: torch.Tensor, negative_logits: torch.Tensor) -> np.ndarray:
    """AUC per detector of clean in-class (label 1) vs attacked out-of-class (label 0) logits."""
    from sklearn.metrics import roc_auc_score

    pos, neg = positive_logits.detach().cpu().numpy(), negative_logits.detach().cpu().numpy()
    truth = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    return np.array([roc_auc_score(truth, np.r_[pos[:, k], neg[:, k]]) for k in range(pos.shape[1])])


def sample_per_detector(groups: list[torch.Tensor], count: int, generator: torch.Generator) -> torch.Tensor:
    """(count, K) indices: column k resampled (with replacement) from groups[k]; balances classes."""
    return torch.stack([g[torch.randint(len(g), (count,), generator=generator)] for g in groups], dim=1)


class _Detectors(nn.Module):
    """z_H(x): all K detector logits on the same input, as one differentiable module."""

    def __init__(self, net: StackedNetwork) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.same_input(x)


@register_defense("gat", description="K one-vs-rest detectors by asymmetric adversarial training (papers 000/001); "
                                     "modes generative, integrated, ovr")
class GenerativeAdversarialTraining(TrainableDefense):
    """Asymmetric adversarial training of K detectors, plus a classifier for the integrated mode."""

    Config = GATConfig
    modes = MODES

    def __init__(self, info: DataInfo, config: GATConfig) -> None:
        super().__init__()
        self.num_classes = info.num_classes
        shape = tuple(info.input_shape)
        self.detectors = StackedNetwork(lambda: classifier_for_shape(shape, 1), info.num_classes)
        self.classifier = classifier_for_shape(shape, info.num_classes)
        self.surface = _Detectors(self.detectors)
        # thresholds T (accept when the routed detector's logit >= T) for generative and integrated
        self.register_buffer("thresholds", torch.zeros(2))
        self.select_mode("generative")

    @classmethod
    def resolve_config(cls, config: GATConfig, info: DataInfo) -> GATConfig:
        norm = parse_norm(config.norm).value
        if config.step_rule not in ("adam", "sign"):
            raise AdvbenchError("gat: step-rule must be adam or sign")
        if not 0 < config.validation < 0.5:
            raise AdvbenchError("gat: validation must be a fraction between 0 and 0.5")
        eps = config.eps or DEFAULT_EPS[norm]
        small = max(info.input_shape[1:]) <= 16
        table = TABLE_1.get((norm, round(eps, 4))) if tuple(info.input_shape[1:]) == (28, 28) else None
        steps = config.steps or (table[0] if table else 20 if small else 100)
        epochs = config.epochs or (100 if small else 30)
        if config.quick:
            steps, epochs = max(5, steps // 4), max(1, epochs // 4)
        if config.step_size:
            step = config.step_size
        elif table and steps == table[0]:
            step = table[1]
        else:
            step = 2.5 * eps / steps
        val_steps = config.val_steps or (table[2] if table and not config.quick else steps)
        return dataclasses.replace(config, norm=norm, eps=eps, steps=steps, step_size=step, epochs=epochs,
                                   val_steps=val_steps)

    @classmethod
    def build(cls, info: DataInfo, config: GATConfig) -> "GenerativeAdversarialTraining":
        return cls(info, config)

    # ------------------------------------------------------------------ inference and modes
    def select_mode(self, mode: str | None, argument: str | None = None) -> None:
        """`generative`, `integrated` or `ovr`; the argument is a detection threshold T
        (default: the 95%-TPR threshold found at training)."""
        if mode is None:
            return
        super().select_mode(mode)
        self.mode_argument = argument
        if argument is not None:
            try:
                value = float(argument)
            except ValueError:
                raise AdvbenchError(f"gat mode {mode}:{argument}: the threshold T must be a number") from None
        else:
            value = float(self.thresholds[MODES.index(mode)]) if mode != "ovr" else math.nan
        self.reject_threshold = None if mode == "ovr" else -value  # reject scores are -z, so T -> -T

    def load_state_dict(self, state, strict: bool = True, assign: bool = False):
        result = super().load_state_dict(state, strict=strict, assign=assign)
        self.select_mode(self.mode, getattr(self, "mode_argument", None))  # thresholds arrive with the weights
        return result

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(x) if self.mode == "integrated" else self.detectors.same_input(x)

    def routed_logit(self, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """z of the detector each input is routed to: argmax of f (integrated) or of z_H."""
        if self.mode == "integrated":
            return self.detectors.same_input(x).gather(1, logits.argmax(1, keepdim=True)).squeeze(1)
        return logits.max(dim=1).values

    def reject_score(self, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor | None:
        if self.mode == "ovr":
            return None
        return -self.routed_logit(x, logits)

    def gradient_model(self) -> nn.Module:
        return self.classifier if self.mode == "integrated" else self.surface

    def attack_surfaces(self) -> dict[str, nn.Module]:
        return {"classifier": self.classifier, "detectors": self.surface}

    # ------------------------------------------------------------------ training
    def fit(self, data: Dataset, config: GATConfig, *, seed: int, device: torch.device, observer: Observer,
            checkpoints: CheckpointPlace | None = None) -> list[float]:
        generator = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        self.to(device)
        n = len(data.train_y)
        order = torch.randperm(n, generator=generator)
        held = max(int(config.validation * n), self.num_classes)
        val_idx, train_idx = order[:held], order[held:]
        x_train, y_train = data.train_x[train_idx], data.train_y[train_idx]
        x_val, y_val = data.train_x[val_idx].to(device), data.train_y[val_idx].to(device)

        observer.message("training the integrated mode's classifier f")
        train_classifier(self.classifier, x_train, y_train, epochs=config.classifier_epochs, batch_size=64,
                         lr=1e-3, seed=seed, device=device, observer=observer, description="training gat classifier",
                         checkpoints=checkpoints)
        if config.init_from_classifier:
            self.detectors.init_from_classifier(self.classifier)

        norm = parse_norm(config.norm)
        positives = [torch.nonzero(y_train == k).squeeze(1) for k in range(self.num_classes)]
        negatives = [torch.nonzero(y_train != k).squeeze(1) for k in range(self.num_classes)]
        if any(len(p) == 0 for p in positives):
            raise AdvbenchError("gat: every class needs training samples")
        optimizer = torch.optim.Adam(self.detectors.parameters(), lr=config.lr)
        iterations = math.ceil(max(len(p) for p in positives) / config.batch_size)
        best = KeptValues(auc=np.full(self.num_classes, -1.0),
                          states=[self.detectors.detector_state(k) for k in range(self.num_classes)])
        loop = EpochLoop("training gat detectors", config.epochs, observer, checkpoints, detectors=self.detectors,
                         optimizer=optimizer, generator=generator, best=best)
        for _ in loop:
            self.detectors.train()
            total = 0.0
            for _ in range(iterations):
                pos = x_train[sample_per_detector(positives, config.batch_size, generator)].to(device)
                neg = x_train[sample_per_detector(negatives, config.batch_size, generator)].to(device)
                self.detectors.eval()
                neg = attack_detectors(self.detectors, neg, eps=config.eps, norm=norm, steps=config.steps,
                                       step_size=config.step_size, step_rule=config.step_rule,
                                       bounds=data.info.bounds)
                self.detectors.train()
                loss = asymmetric_loss(self.detectors(pos), self.detectors(neg))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.item()
            aucs = self._validate(x_val, y_val, config, generator, data.info.bounds)
            for k in np.nonzero(aucs > best.values["auc"])[0]:
                best.values["auc"][k] = aucs[k]
                best.values["states"][k] = self.detectors.detector_state(int(k))
            loop.report(f"loss {total / iterations:.4f}, validation AUC mean {aucs.mean():.4f} (min {aucs.min():.4f})")
        for k, state in enumerate(best.values["states"]):
            self.detectors.load_detector_state(k, state)
        self.eval()
        self._set_thresholds(x_val)
        self.select_mode("generative")
        return loop.seconds

    def _validate(self, x_val: torch.Tensor, y_val: torch.Tensor, config: GATConfig, generator: torch.Generator,
                  bounds: tuple[float, float]) -> np.ndarray:
        """Per-detector AUC of clean in-class vs attacked out-of-class validation inputs."""
        self.detectors.eval()
        groups_pos = [torch.nonzero(y_val == k).squeeze(1) for k in range(self.num_classes)]
        groups_neg = [torch.nonzero(y_val != k).squeeze(1) for k in range(self.num_classes)]
        if any(len(g) == 0 for g in groups_pos):
            raise AdvbenchError("gat: the validation split lacks a class; raise --validation")
        count = min(config.val_samples, min(len(g) for g in groups_neg))
        pos = x_val[sample_per_detector(groups_pos, count, generator)]
        neg = attack_detectors(self.detectors, x_val[sample_per_detector(groups_neg, count, generator)],
                               eps=config.eps, norm=parse_norm(config.norm), steps=config.val_steps,
                               step_size=config.step_size, step_rule=config.step_rule, bounds=bounds)
        with torch.no_grad():
            return detector_aucs(self.detectors(pos), self.detectors(neg))

    @torch.no_grad()
    def _set_thresholds(self, x_val: torch.Tensor) -> None:
        """T accepting 95% of clean validation inputs, for the generative and integrated modes."""
        z = self.detectors.same_input(x_val)
        generative = z.max(dim=1).values
        integrated = z.gather(1, self.classifier(x_val).argmax(1, keepdim=True)).squeeze(1)
        for i, routed in enumerate((generative, integrated)):
            self.thresholds[i] = torch.quantile(routed, 1 - TPR_TARGET)
