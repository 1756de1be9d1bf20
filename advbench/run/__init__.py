"""Running a grid: plan -> schedule -> execute -> records.

- `plan`: `prepare(grid)` / `plan_grid(grid, data)` build the `Plan` once (cells, attacks,
  epsilons, models, samples) before anything is written.
- `schedule`: the pure decision per cell (run, reuse, skip, refuse, done).
- `session`: what every executor shares (inspection, bookkeeping, estimates, finishing a cell).
- `local`, `processes` and `ray_executor`: thin loops over the session's jobs; `shards`: the
  sample shards the process pool and Ray hand out, and their one driver loop.
- `cell`: one cell's batches, verified and re-predicted, written as parts (`parts`).
- `target`: the attacker's view of a defense; `predict`: seeded clean predictions;
  `guard`: the defense left untouched; `estimate`: progress and time estimates;
  `manifest`: the run's manifest; `models`: defenses loaded once; `device`: device, threads.
"""

from .cell import run_cell
from .device import pick_device, use_threads
from .local import run_grid
from ..settings import Paths
from .plan import Plan, PlannedCell, plan_cells, plan_grid, prepare
from .predict import predict_batches
from .target import attack_target

__all__ = ["Paths", "Plan", "PlannedCell", "attack_target", "pick_device", "plan_cells", "plan_grid",
           "predict_batches", "prepare", "run_cell", "run_grid", "use_threads"]
