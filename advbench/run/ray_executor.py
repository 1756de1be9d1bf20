"""The Ray executor: the session's jobs split into sample shards, each a Ray task.

The driver opens the same `Session` as a local run (inspection, schedule, skip / refuse /
reuse, estimates) and hands the shards (`run.shards`) to Ray. A cell whose shard fails is
refused with the reason and the grid goes on (unless `fail_fast`); a crashed worker loses
only its batch in progress, and `--resume` runs only the batches without a part.
"""

from __future__ import annotations

from typing import Any, Callable

from ..contract import Manifest
from ..errors import AdvbenchError
from ..progress import Observer
from ..store import RunStore
from .plan import Plan
from .session import Session
from .shards import Shard, ShardResult, run_shard, run_shards

INSTALL_HINT = "the Ray executor needs ray: pip install 'advbench[ray]'"


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise AdvbenchError(INSTALL_HINT) from None
    return ray


class RayPool:
    """Shards as Ray tasks (one GPU each when the run is on CUDA)."""

    def __init__(self, ray: Any, cuda: bool) -> None:
        self.ray, self.task = ray, ray.remote(num_gpus=1 if cuda else 0)(run_shard)

    def submit(self, shard: Shard) -> Any:
        return self.task.remote(shard)

    def next_done(self, pending: list[Any], on_message: Callable[[str], None]
                  ) -> tuple[ShardResult, list[Any]]:
        """Ray tasks carry no messages back: a warning raised in one stays on its node."""
        done, pending = self.ray.wait(pending, num_returns=1)
        return self.ray.get(done[0]), pending  # a crash stops the run here; finished batches stay on disk


def run_grid_on_ray(plan: Plan, store: RunStore, *, observer: Observer, address: str | None = None,
                    shard_size: int = 0, reuse: bool = True, fail_fast: bool = False) -> Manifest:
    """The Ray counterpart of `run.local.run_grid` (see the module docstring)."""
    ray = import_ray()
    with store.lock():
        session = Session.open(plan, store, observer, reuse)
        todo = session.jobs(fail_fast)
        with observer.task("grid cells", len(todo), work=session.estimate(todo)) as advance:
            if not ray.is_initialized():
                ray.init(address=address, include_dashboard=False, log_to_driver=False)
            run_shards(RayPool(ray, plan.device.type == "cuda"), session, todo, shard_size, advance, fail_fast)
    return session.manifest
