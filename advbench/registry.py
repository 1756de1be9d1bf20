"""One registry type for defenses, attacks and datasets.

Built-ins register with a decorator next to their definition; third-party packages
add entries through the entry-point groups `advbench.defenses`, `advbench.attacks`
and `advbench.datasets`. A plugin that fails to import is listed as broken and only
raises when someone asks for it, so one bad package never breaks the CLI.
"""

from __future__ import annotations

import difflib
import importlib
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Callable, Generic, Iterator, TypeVar

from .errors import AdvbenchError

T = TypeVar("T")

BUILTIN = "built-in"


@dataclass(frozen=True)
class Entry:
    name: str
    description: str
    origin: str
    obj: Any = None
    error: str | None = None
    preset: tuple[tuple[str, Any], ...] = ()  # keyword arguments fixed by this name (e.g. norm="l2")
    traceback: str | None = None  # of a plugin that failed to import, for --debug

    @property
    def broken(self) -> bool:
        return self.error is not None


def _first_line(obj: Any) -> str:
    text = getattr(obj, "description", None) or (obj.__doc__ or "")
    return text.strip().splitlines()[0] if text.strip() else ""


class Registry(Generic[T]):
    """Name -> object table with decorator registration and entry-point discovery."""

    def __init__(self, kind: str, group: str, builtin_modules: tuple[str, ...], base: str | None = None) -> None:
        self.kind = kind
        self.group = group
        self._builtin_modules = builtin_modules
        self._base = base  # "module:Class" every plugin entry must subclass (imported only when plugins load)
        self._entries: dict[str, Entry] = {}
        self._loaded = False

    def register(self, name: str, *, description: str | None = None, **preset: Any) -> Callable[[T], T]:
        """Decorator used by built-ins; a duplicate name is a programming error. `preset`
        fixes keyword arguments for this name, so one class can serve several names that
        differ only in, say, the norm (`pgd-linf` and `pgd-l2`)."""

        def decorate(obj: T) -> T:
            self.add(name, obj, description=description, preset=preset)
            return obj

        return decorate

    def add(self, name: str, obj: Any, *, description: str | None = None, origin: str = BUILTIN,
            preset: dict[str, Any] | None = None) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice ({self._entries[name].origin} and {origin})")
        self._entries[name] = Entry(name, description or _first_line(obj), origin, obj,
                                    preset=tuple(sorted((preset or {}).items())))

    def entry(self, name: str) -> Entry:
        """The entry behind `name` (unknown and broken names fail as in `get`)."""
        self.get(name)
        return self._entries[name]

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for module in self._builtin_modules:
            importlib.import_module(module)
        for ep in entry_points(group=self.group):
            origin = f"{ep.dist.name} {ep.dist.version}" if ep.dist else "plugin"
            if ep.name in self._entries:
                self._entries[f"{ep.name}@{origin.split()[0]}"] = Entry(
                    ep.name, "", origin, error=f"name clashes with the {self._entries[ep.name].origin} {self.kind}"
                )
                continue
            try:
                obj = ep.load()
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # noqa: BLE001 - even sys.exit() in a plugin must not break the CLI
                self._entries[ep.name] = Entry(ep.name, "", origin, error=f"{type(exc).__name__}: {exc}",
                                               traceback=traceback.format_exc())
                continue
            problem = self._wrong_type(obj)
            if problem:
                self._entries[ep.name] = Entry(ep.name, "", origin, error=problem)
            else:
                self.add(ep.name, obj, origin=origin)

    def _wrong_type(self, obj: Any) -> str | None:
        if self._base is None:
            return None
        module, _, name = self._base.partition(":")
        base = getattr(importlib.import_module(module), name)
        if isinstance(obj, type) and issubclass(obj, base):
            return None
        return f"entry point is {obj!r}, not a subclass of {name}"

    @contextmanager
    def temporarily(self, name: str, obj: Any, *, description: str | None = None) -> Iterator[None]:
        """Register `obj` as `name` for the duration of a `with` block (tests, notebooks)."""
        self._load()
        self.add(name, obj, description=description, origin="temporary")
        try:
            yield
        finally:
            self._entries.pop(name, None)

    def refresh(self) -> None:
        """Forget plugin entries and look for entry points again (after installing a package)."""
        self._entries = {k: e for k, e in self._entries.items() if e.origin == BUILTIN}
        self._loaded = False

    def entries(self) -> list[Entry]:
        self._load()
        return sorted(self._entries.values(), key=lambda e: (e.origin != BUILTIN, e.name))

    def names(self) -> list[str]:
        return [e.name for e in self.entries() if not e.broken]

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._entries

    def get(self, name: str) -> T:
        self._load()
        entry = self._entries.get(name)
        if entry is None:
            close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(sorted(self._entries))}"
            raise AdvbenchError(f"unknown {self.kind} {name!r}{hint}")
        if entry.broken:
            raise BrokenPluginError(f"{self.kind} {name!r} from {entry.origin} failed to load: {entry.error}",
                                    entry.traceback)
        return entry.obj


class BrokenPluginError(AdvbenchError):
    """A plugin entry that failed to load; `--debug` prints the plugin's own traceback."""

    def __init__(self, message: str, plugin_traceback: str | None = None) -> None:
        super().__init__(message)
        self.plugin_traceback = plugin_traceback


defenses: Registry[Any] = Registry("defense", "advbench.defenses", ("advbench.defenses",),
                                   base="advbench.defenses.base:Defense")
attacks: Registry[Any] = Registry("attack", "advbench.attacks", ("advbench.attacks",), base="advbench.attacks.base:Attack")
datasets: Registry[Any] = Registry("dataset", "advbench.datasets", ("advbench.data",))

register_defense = defenses.register
register_attack = attacks.register
register_dataset = datasets.register
