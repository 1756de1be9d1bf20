"""docs/plugins.md's targeted PGD, run as written: under 40 lines, and a working attack."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from advbench import Paths, evaluate
from advbench.config import grid_from_dict
from advbench.registry import attacks

DOC = Path(__file__).parents[2] / "docs" / "plugins.md"
ZOO = Path(__file__).parents[2] / "zoo"


def _example() -> str:
    section = DOC.read_text().split("## An attack on advbench's engine")[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_targeted_pgd_example_is_short_and_pulls_inputs_to_their_least_likely_class(tmp_path):
    code = _example()
    assert len(code.strip().splitlines()) < 40
    registered = {}

    def register_attack(name, **_):  # the doc's decorator, kept out of the global registry
        return lambda cls: registered.setdefault(name, cls)

    namespace = {"__name__": "plugin_example"}
    exec(compile(code.replace("from advbench import FixedEpsilonAttack, Norm, register_attack",
                              "from advbench import FixedEpsilonAttack, Norm"), "plugins.md", "exec"),
         {**namespace, "register_attack": register_attack})
    grid = grid_from_dict({"samples": 60, "sanity": False, "defenses": ["cnn"],
                           "attacks": [{"name": "pgd-ll", "epsilons": [0.1, 0.3]}]})
    with attacks.temporarily("pgd-ll", registered["pgd-ll"]):
        run = evaluate(grid, paths=Paths(results_dir=tmp_path, zoo_dir=ZOO), artifacts=False)
    assert not run.failed
    records = run.store.records()
    clean = (records.clean_pred == records.label)
    at = {eps: records[records.epsilon == eps] for eps in (0.1, 0.3)}
    robust = {eps: ((rows.clean_pred == rows.label) & (rows.adv_pred == rows.label)).mean() for eps, rows in at.items()}
    assert robust[0.3] < robust[0.1] < clean.mean()
    # the examples went where the attack pulled them: the clean model's least likely class
    from advbench.data import load_dataset
    from advbench.zoo import load

    model, _ = load("cnn-digits", ZOO)
    data = load_dataset("digits")
    rows = at[0.3].sort_values("sample")
    with torch.no_grad():
        goal = model(data.test_x[torch.tensor(rows["sample"].to_numpy())]).argmin(1).numpy()
    assert (rows["adv_pred"].to_numpy() == goal).mean() > 0.5
