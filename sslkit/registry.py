"""Name -> implementation tables, one per kind of plugin, that remember who registered what."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Generic, Iterator, TypeVar

from .errors import DuplicateNameError, UnknownNameError

T = TypeVar("T")


@dataclass(frozen=True)
class Provider:
    """The plugin (and the distribution that installed it) behind a registered name."""

    plugin: str
    distribution: str | None = None
    version: str | None = None

    def describe(self) -> str:
        if self.distribution:
            return f"plugin '{self.plugin}' ({self.distribution} {self.version})"
        return f"plugin '{self.plugin}'"


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    provider: Provider


def suggest(name: str, choices: list[str]) -> str:
    """' (did you mean 'x'?)' for the closest choice, or ''."""
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


@dataclass
class Registry(Generic[T]):
    """Registered names of one kind ("pretext task", "backbone", ...).

    Names are unique: a second registration of a name is an error that names both plugins,
    never a silent override or rename.
    """

    kind: str
    _entries: dict[str, Entry[T]] = field(default_factory=dict)
    # Set by the plugin loader so that "unknown name" can say which plugin failed to load.
    load_failures: dict[str, str] = field(default_factory=dict)

    def register(self, name: str, obj: T, provider: Provider) -> None:
        if not isinstance(name, str) or not name or name != name.strip():
            raise DuplicateNameError(
                f"{provider.describe()} registered an invalid {self.kind} name {name!r}: "
                "use a non-empty string without surrounding spaces"
            )
        if name in self._entries:
            first = self._entries[name].provider
            raise DuplicateNameError(
                f"{self.kind} '{name}' is registered by both {first.describe()} and "
                f"{provider.describe()}: uninstall or disable one of them "
                "(SSLKIT_PLUGINS='-NAME' or --plugins '-NAME')"
            )
        self._entries[name] = Entry(name, obj, provider)

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            known = sorted(self._entries)
            hint = suggest(name, known)
            msg = f"unknown {self.kind} '{name}'{hint}; known: {', '.join(known) or 'none'}"
            if self.load_failures:
                msg += f" (plugins that failed to load: {', '.join(sorted(self.load_failures))})"
            raise UnknownNameError(msg) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(self._entries[n] for n in sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)


def as_rows(registry: Registry[Any]) -> list[dict[str, str | None]]:
    """Plain rows for listing (CLI table, --json)."""
    return [
        {
            "kind": registry.kind,
            "name": e.name,
            "plugin": e.provider.plugin,
            "distribution": e.provider.distribution,
            "version": e.provider.version,
        }
        for e in registry
    ]
