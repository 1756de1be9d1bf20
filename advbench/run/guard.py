"""An attack must leave the defense as it found it; `StateGuard` checks and restores."""

from __future__ import annotations

import torch
from torch import nn

from ..defenses.base import state_digest
from ..errors import AttackIsolationError


def tensor_versions(model: nn.Module) -> list[tuple[str, int, int, tuple[int, ...]]]:
    """Each parameter's and buffer's storage address, version counter and shape: any in-place
    write through autograd's view bumps the counter, any replacement moves the address. O(1) per
    tensor, no copy (on a GPU nothing goes to the host)."""
    return [(name, t.data_ptr(), t._version, tuple(t.shape)) for name, t in model.state_dict(keep_vars=True).items()]


class StateGuard:
    """A model's exact state when a cell starts: parameters, buffers and each submodule's
    train/eval flag. An attack must leave all of it alone; `check` (after every batch: the
    version counters) and `check(full=True)` (once per cell: a sha256 of every weight, which also
    sees writes through `.data`) say when it did not, and `restore` puts everything back, so a
    violation costs only its cell and never the next one (e.g. BatchNorm statistics updated by
    forwards in training mode)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.digest = state_digest(model)
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.modes = {name: module.training for name, module in model.named_modules()}
        self.versions = tensor_versions(model)

    def check(self, attack: str, *, full: bool = False) -> None:
        """Raise `AttackIsolationError` (after restoring the model) when `attack` changed it."""
        training = [name or "the model" for name, module in self.model.named_modules()
                    if module.training and not self.modes.get(name, False)]
        changed = tensor_versions(self.model) != self.versions or (full and state_digest(self.model) != self.digest)
        if training or changed:
            self.restore()
        if training:
            raise AttackIsolationError(f"{attack} left {training[0]} in training mode (it changes predictions); "
                                       "this cell's records are discarded")
        if changed:
            raise AttackIsolationError(f"{attack} changed the defense's weights or buffers; this cell's records are "
                                       "discarded")

    def restore(self) -> None:
        with torch.no_grad():
            self.model.load_state_dict(self.state)
        for name, module in self.model.named_modules():
            module.training = self.modes.get(name, module.training)
        self.versions = tensor_versions(self.model)  # loading writes in place: the restored state's counters
