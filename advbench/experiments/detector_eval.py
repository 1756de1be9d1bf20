"""Robustness tests of GAT's detectors (paper 001 §4.1, Tables 2, 4, 8-12).

For each attack configuration and detector k: AUC of clean class-k test inputs
(label 1) against out-of-class test inputs attacked to raise d_k's logit within the
epsilon ball (label 0). With restarts, each negative keeps its highest logit.
This runs attacks, so it lives beside the runner rather than in the metrics layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from ..data import Dataset
from ..defenses.gat import attack_detectors, detector_aucs, sample_per_detector
from ..errors import AdvbenchError
from ..norms import parse_norm
from ..progress import Observer


@dataclass(frozen=True)
class DetectorAttack:
    norm: str
    eps: float
    steps: int
    step_size: float
    restarts: int = 1
    step_rule: str = "adam"

    @classmethod
    def parse(cls, text: str) -> "DetectorAttack":
        """`norm:eps:steps:step-size[:restarts[:rule]]`, e.g. `linf:0.3:100:0.01:5:sign`."""
        from ..norms import parse_epsilon

        parts = text.split(":")
        if not 4 <= len(parts) <= 6:
            raise AdvbenchError(f"attack config {text!r} must look like norm:eps:steps:step-size[:restarts[:rule]]")
        try:
            config = cls(parse_norm(parts[0]).value, parse_epsilon(parts[1]), int(parts[2]), parse_epsilon(parts[3]),
                         int(parts[4]) if len(parts) > 4 else 1, parts[5] if len(parts) > 5 else "adam")
        except ValueError:
            raise AdvbenchError(f"attack config {text!r}: steps and restarts must be integers") from None
        if config.steps < 1 or config.restarts < 1 or config.step_rule not in ("adam", "sign"):
            raise AdvbenchError(f"attack config {text!r}: steps and restarts >= 1, rule adam or sign")
        return config

    def __str__(self) -> str:
        return f"{self.norm} eps {self.eps:g}, {self.steps} steps of {self.step_size:g} ({self.step_rule}), " \
               f"{self.restarts} restart{'s' * (self.restarts > 1)}"


def detector_auc_table(model, data: Dataset, configs: list[DetectorAttack], *, samples: int = 200, seed: int = 0,
                       device: torch.device = torch.device("cpu"), observer: Observer | None = None) -> pd.DataFrame:
    """Rows: attack configurations; columns: detectors d_0..d_{K-1} and their mean."""
    observer = observer or Observer()
    detectors = model.detectors.to(device).eval()
    k = detectors.k
    x, y = data.test_x.to(device), data.test_y.to(device)
    generator = torch.Generator().manual_seed(seed)
    positives = [torch.nonzero(y == c).squeeze(1) for c in range(k)]
    negatives = [torch.nonzero(y != c).squeeze(1) for c in range(k)]
    count = min(samples, min(len(g) for g in negatives))
    neg_idx = sample_per_detector(negatives, count, generator)
    pos_count = min(len(g) for g in positives)
    pos_idx = torch.stack([g[:pos_count] for g in positives], dim=1)
    with torch.no_grad():
        pos_logits = detectors(x[pos_idx])
    rows = []
    with observer.task("detector attacks", len(configs)) as advance:
        for config in configs:
            torch.manual_seed(seed)
            best = None
            for _ in range(config.restarts):
                adv = attack_detectors(detectors, x[neg_idx], eps=config.eps, norm=parse_norm(config.norm),
                                       steps=config.steps, step_size=config.step_size, step_rule=config.step_rule,
                                       bounds=data.info.bounds, random_init=config.restarts > 1)
                with torch.no_grad():
                    logits = detectors(adv)
                best = logits if best is None else torch.maximum(best, logits)
            aucs = detector_aucs(pos_logits, best)
            rows.append({"attack": str(config), **{f"d{j}": float(a) for j, a in enumerate(aucs)},
                         "mean": float(aucs.mean())})
            advance(1)
    return pd.DataFrame(rows)


def default_detector_attacks(model) -> list[DetectorAttack]:
    """The model's own training attack with 100 steps, and 500 steps of half the size with 5
    restarts (paper 001 Table 2's two rows)."""
    if not hasattr(model, "detectors"):
        raise AdvbenchError("this model has no detectors (use a gat model)")
    hyper = (model.card or {}).get("hyperparameters", {})
    norm, eps = hyper.get("norm", "linf"), hyper.get("eps", 0.3)
    step = 2.5 * eps / 100
    return [DetectorAttack(norm, eps, 100, step), DetectorAttack(norm, eps, 500, step / 2, restarts=5)]
