"""A refused attack never contaminates the next cell: after every cell the defense gets back the
exact parameters, buffers and train/eval flags it had before."""

from __future__ import annotations

import pandas as pd
import torch
from torch import nn

from advbench.attacks.base import FixedEpsilonAttack
from advbench.norms import Norm
from advbench.registry import attacks
from advbench.run.guard import StateGuard
from advbench.store import RunStore, list_runs
from helpers import invoke

BN_MODEL = '''
import torch
from torch import nn


def batchnorm_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10))
'''


class BatchNormStirrer(FixedEpsilonAttack):
    """Puts the model in training mode and runs forwards on shifted inputs (BatchNorm statistics move)."""

    norm = Norm.LINF
    gradient_based = False

    def run(self, target, x, y, *, epsilon):
        target.decision_model.train()
        for _ in range(5):
            target.decision_model(x * 3 + 1)
        return x.clone()


def _noise_cell(results) -> pd.DataFrame:
    (store,) = [RunStore(r.path) for r in list_runs(results)][-1:]
    frame = store.records()
    return frame[frame["attack"] == "noise"].drop(columns=["seconds"]).reset_index(drop=True)


def test_the_cell_after_a_refused_attack_sees_the_untouched_model(isolated):
    (isolated / "bn_models.py").write_text(BN_MODEL)
    body = ('samples = 30\nsanity = false\ndefenses = ["python:bn_models:batchnorm_net"]\n{}'
            '[[attacks]]\nname = "noise"\nnorm = "l2"\nlevels = 4\nrepeats = 2\n')
    (isolated / "both.toml").write_text(body.format('[[attacks]]\nname = "stir"\nepsilons = [0.1]\n'))
    (isolated / "clean.toml").write_text(body.format(""))
    with attacks.temporarily("stir", BatchNormStirrer):
        both = invoke("run", isolated / "both.toml", "--format", "csv", "--results-dir", isolated / "a")
    assert both.exit_code not in (0, None), both.output  # the stirring cell is refused
    assert "training mode" in both.output
    clean = invoke("run", isolated / "clean.toml", "--format", "csv", "--results-dir", isolated / "b")
    assert clean.exit_code == 0, clean.output
    after_refusal, alone = _noise_cell(isolated / "a"), _noise_cell(isolated / "b")
    assert len(alone) == 30
    pd.testing.assert_frame_equal(after_refusal, alone)


def test_restore_puts_back_weights_buffers_and_flags():
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Dropout(0.5)).eval()
    model[2].train()  # a flag that differs from the rest must come back as it was too
    before = {k: v.clone() for k, v in model.state_dict().items()}
    guard = StateGuard(model)
    model.train()
    model(torch.randn(8, 4) * 5)
    with torch.no_grad():
        model[0].weight.add_(1)
    guard.restore()
    assert [m.training for m in model.modules()] == [False, False, False, True]
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
