"""The defense spec mini-language, parsed in one place.

    name[:mode[:argument]][@seed][+detect[=FPR]]      a registered defense or a zoo entry
    python:package.module:factory[+detect[=FPR]]      a model from your own code
    robustbench:MODEL[:THREAT][+detect[=FPR]]         a RobustBench leaderboard model (THREAT: Linf, L2)

`@N` names an independently trained copy (zoo entry `<name>-<dataset>-seed<N>`), `:mode`
one of a defense's inference modes (with an argument such as GAT's threshold T), and
`+detect` adds paper 002's logit-based detection on top.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from .errors import AdvbenchError

PYTHON_PREFIX = "python:"
ROBUSTBENCH_PREFIX = "robustbench:"
DEFAULT_DETECT_RATE = 0.05
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.=-]*")


@dataclass(frozen=True)
class DefenseRef:
    """A parsed defense spec; `str(ref)` gives the spec back."""

    name: str
    mode: str | None = None
    mode_argument: str | None = None
    seed: int = 0
    detect_rate: float | None = None
    python_target: str | None = None  # "package.module:factory" for python: specs
    robustbench: str | None = None  # the model name of robustbench: specs
    threat: str | None = None  # its RobustBench threat model (Linf, L2); None: the grid's norm

    @classmethod
    def parse(cls, text: str) -> "DefenseRef":
        spec = str(text).strip()
        if not spec:
            raise AdvbenchError("empty defense spec")
        body, detect_rate = _split_detect(spec)
        if body.startswith(PYTHON_PREFIX):
            target = body[len(PYTHON_PREFIX):]
            module, _, factory = target.partition(":")
            if not module or not factory or ":" in factory:
                raise AdvbenchError(f"python defense {spec!r} must look like python:package.module:factory")
            return cls(name=target, detect_rate=detect_rate, python_target=target)
        if body.startswith(ROBUSTBENCH_PREFIX):
            model, _, threat = body[len(ROBUSTBENCH_PREFIX):].partition(":")
            if not _NAME.fullmatch(model) or (threat and not _NAME.fullmatch(threat)):
                raise AdvbenchError(f"robustbench defense {spec!r} must look like robustbench:MODEL or "
                                    "robustbench:MODEL:Linf")
            return cls(name=body, detect_rate=detect_rate, robustbench=model, threat=threat or None)
        body, at, seed_text = body.partition("@")
        seed = 0
        if at:
            if not seed_text.isdigit():
                raise AdvbenchError(f"defense {spec!r}: the part after @ must be a non-negative integer seed")
            seed = int(seed_text)
        name, _, rest = body.partition(":")
        mode, _, argument = rest.partition(":")
        if not _NAME.fullmatch(name):
            raise AdvbenchError(f"defense {spec!r}: {name!r} is not a defense or zoo entry name")
        if rest and not mode:
            raise AdvbenchError(f"defense {spec!r}: an empty mode after ':'")
        return cls(name=name, mode=mode or None, mode_argument=argument or None, seed=seed, detect_rate=detect_rate)

    def __str__(self) -> str:
        if self.python_target:
            text = PYTHON_PREFIX + self.python_target
        elif self.robustbench:
            text = ROBUSTBENCH_PREFIX + self.robustbench + (f":{self.threat}" if self.threat else "")
        else:
            text = self.name + (f":{self.mode}" if self.mode else "") + (
                f":{self.mode_argument}" if self.mode_argument else "") + (f"@{self.seed}" if self.seed else "")
        if self.detect_rate is not None:
            text += "+detect" + ("" if self.detect_rate == DEFAULT_DETECT_RATE else f"={self.detect_rate:g}")
        return text


def _split_detect(spec: str) -> tuple[str, float | None]:
    """`cnn+detect=0.01` -> ("cnn", 0.01); a spec without the suffix -> (spec, None)."""
    base, plus, suffix = spec.rpartition("+")
    if not plus or not suffix.startswith("detect"):
        return spec, None
    name, _, value = suffix.partition("=")
    if name != "detect":
        raise AdvbenchError(f"defense {spec!r}: the suffix must be +detect or +detect=FPR")
    try:
        rate = float(value) if value else DEFAULT_DETECT_RATE
    except ValueError:
        raise AdvbenchError(f"defense {spec!r}: +detect=FPR needs a number, e.g. +detect=0.05") from None
    if not 0 < rate < 1:
        raise AdvbenchError(f"defense {spec!r}: the false-positive rate must be between 0 and 1")
    return base, rate


_SEED_RANGE = re.compile(r"^(?P<body>[^@+]+)@(?P<first>\d+)\.\.(?P<last>\d+)(?P<suffix>(\+.*)?)$")
MAX_SEEDS = 100  # each seed is a model trained on its own: a typo like cnn@0..100000 must not start 100001 trainings


def expand_seeds(spec: str, seeds: int | None = None) -> list[str]:
    """`cnn@0..4` (or `cnn` with `seeds = 5`) -> cnn@0 ... cnn@4: independently trained copies,
    whose spread the report shows as seed variance. Any other spec is returned as it is."""
    match = _SEED_RANGE.match(spec.strip())
    if match:
        if seeds is not None:
            raise AdvbenchError(f"defense {spec!r}: give either a seed range or seeds = N, not both")
        first, last = int(match["first"]), int(match["last"])
        if last <= first:
            raise AdvbenchError(f"defense {spec!r}: the seed range must go up, e.g. cnn@0..4")
        if last - first + 1 > MAX_SEEDS:
            raise AdvbenchError(f"defense {spec!r}: {last - first + 1} seeds, but a range holds at most {MAX_SEEDS} "
                                "(each seed is a separately trained model)")
        return [f"{match['body']}@{i}{match['suffix']}" for i in range(first, last + 1)]
    if seeds is None:
        return [spec]
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise AdvbenchError(f"defense {spec!r}: seeds must be a positive integer, got {seeds!r}")
    if seeds > MAX_SEEDS:
        raise AdvbenchError(f"defense {spec!r}: seeds = {seeds}, but at most {MAX_SEEDS} (each seed is a separately "
                            "trained model)")
    ref = DefenseRef.parse(spec)
    if ref.python_target or ref.robustbench or ref.seed:
        raise AdvbenchError(f"defense {spec!r}: seeds = N needs a trainable defense name without @seed")
    body, detect = (spec.split("+", 1) + [""])[:2]
    return [f"{body}@{i}" + (f"+{detect}" if detect else "") for i in range(seeds)]


def seed_group(spec: str) -> str:
    """The spec with its seed dropped: copies that differ only in seed share it."""
    try:
        ref = DefenseRef.parse(spec)
    except AdvbenchError:
        return spec
    return str(replace(ref, seed=0))
