"""Built-in defenses register themselves on import."""

from .base import Defense, ExpectationOverTransformation, ModelDefense, Prediction, TrainableDefense
from . import cnn  # noqa: F401  (registers `cnn`)

__all__ = ["Defense", "ExpectationOverTransformation", "ModelDefense", "Prediction", "TrainableDefense"]
