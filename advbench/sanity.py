"""Masking caught in every run: cheap attacks that gradients cannot fool, added to each grid.

A defense that masks or falsifies its gradients (a step function, saturated logits, a
wrong straight-through estimate) reads robust under every gradient attack. So every grid
with gradient attacks also runs, per norm and at the same epsilons, a small Square attack
(score-based: it never reads gradients) and, when the zoo has a plain `cnn` for the
dataset, PGD crafted on that cnn and transferred. When either beats the gradient attacks,
the trust checks flag those cells and the table prints their numbers as unreliable.
`sanity = false` in a grid (or `--no-sanity`) turns this off.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .config import AttackSpec, Grid, default_epsilons
from .contract import Access, CellRole
from .norms import Norm
from .zoo_names import default_name

if TYPE_CHECKING:
    from .attacks.base import Attack

SANITY_QUERIES = 300
SANITY_PREFIX = "sanity"
SQUARE_BY_NORM = {Norm.LINF: "square", Norm.L2: "square-l2"}
PGD_BY_NORM = {Norm.LINF: "pgd-linf", Norm.L2: "pgd-l2"}
TRANSFER_SOURCE = "cnn"


def with_sanity_attacks(grid: Grid, zoo_dir: Path, built: Callable[[AttackSpec], Attack] | None = None) -> Grid:
    """`grid` plus, for each norm its gradient attacks use, a small Square attack and (when
    `zoo_dir` holds a cnn for the dataset, or the grid trains one, and a defense is not that cnn)
    a PGD transfer from it. `built` gives a spec's attack (the plan's, built once)."""
    if built is None:
        from .attacks import make_attack

        def built(spec: AttackSpec) -> Attack:
            return make_attack(spec.name, dict(spec.options))

    if not grid.sanity or any(a.role is CellRole.SANITY for a in grid.attacks):
        return grid
    epsilons: dict[Norm, set[float]] = {}
    for spec in grid.attacks:
        attack = built(spec)
        if attack.access is Access.GRADIENT and spec.source is None:
            epsilons.setdefault(attack.norm, set()).update(spec.epsilons or default_epsilons(grid.dataset, attack.norm))
    # a cnn the grid trains before its cells run counts too: the grid (and its fingerprint, which
    # resume matches) must not depend on whether the zoo held the cnn when the run began
    has_source = ((zoo_dir / f"{default_name(TRANSFER_SOURCE, grid.dataset)}.pt").exists()
                  or any(d.spec == TRANSFER_SOURCE for d in grid.defenses))
    others = any(d.spec != TRANSFER_SOURCE for d in grid.defenses)
    extra = []
    for norm, values in epsilons.items():
        chosen = tuple(sorted(values))
        square, pgd = SQUARE_BY_NORM[norm], PGD_BY_NORM[norm]
        extra.append(AttackSpec(square, chosen, (("queries", SANITY_QUERIES),), label=f"{SANITY_PREFIX} {square}",
                                role=CellRole.SANITY))
        if has_source and others:
            extra.append(AttackSpec(pgd, chosen, label=f"{SANITY_PREFIX} {pgd} from {TRANSFER_SOURCE}",
                                    source=TRANSFER_SOURCE, role=CellRole.SANITY))
    return replace(grid, attacks=grid.attacks + tuple(extra))
