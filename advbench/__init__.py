"""advbench: a command-line benchmark for adversarial robustness.

Public API. Evaluate: `benchmark(model, x, y, ...)` (an in-memory model and data, one call),
`evaluate(grid)` (the front door every command uses), `Grid`, `load_grid`. Extend: subclass `Defense` (only `forward` is required) or
`FixedEpsilonAttack` / `MinimumNormAttack` and register them with `register_defense` /
`register_attack`, or through an entry point (`advbench.defenses`, `advbench.attacks`,
`advbench.datasets`) in your package; see docs/plugins.md.
"""

__version__ = "0.1.0"

from .errors import AdvbenchError  # noqa: E402
from .registry import register_attack, register_dataset, register_defense  # noqa: E402

# Everything else loads on first use, so `advbench --help` never imports torch.
_LAZY = {
    "Norm": "norms", "benchmark": "notebook", "BenchmarkResult": "notebook", "evaluate": "evaluation", "Evaluation": "evaluation", "prepare": "evaluation",
    "Paths": "settings", "RunOptions": "settings", "ReportOptions": "settings",
    "Grid": "config", "load_grid": "config", "AttackKind": "contract", "Manifest": "contract",
    "Defense": "defenses", "ModelDefense": "defenses", "TrainableDefense": "defenses", "Prediction": "defenses",
    "Attack": "attacks.base", "FixedEpsilonAttack": "attacks.base", "MinimumNormAttack": "attacks.base",
    "AttackTarget": "attacks.base", "AttackOutput": "attacks.base",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(name)


__all__ = ["AdvbenchError", "register_attack", "register_dataset", "register_defense", *_LAZY]
