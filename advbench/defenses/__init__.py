"""Built-in defenses register themselves on import."""

from .base import Defense, ExpectationOverTransformation, ModelDefense, Prediction, TrainableDefense
from . import adversarial_training, analysis_by_synthesis, cnn, gat, latent_variable, pgn  # noqa: F401  (register built-ins)

__all__ = ["Defense", "ExpectationOverTransformation", "ModelDefense", "Prediction", "TrainableDefense"]
