"""Name -> implementation tables, one per kind of plugin, that remember who registered what."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from .errors import DuplicateNameError, UnknownNameError

T = TypeVar("T")

# First-party plugins shipped as separate packages: {name: (kind, distribution)}, so that asking
# for one with only the core installed names the package to install.
FIRST_PARTY: dict[str, tuple[str, str]] = {
    "rotation": ("pretext task", "sslkit-rotation"),
    "context": ("pretext task", "sslkit-context"),
    "rotnet-cifar10": ("reproduction", "sslkit-rotation"),
    "context-cifar10": ("reproduction", "sslkit-context"),
}


MIX = "+"  # joins registered names into a mix (pretext tasks: "rotation+context")


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

    Names are unique. A second registration of a name is a *conflict*: neither registration
    wins (no silent override or rename), the name leaves the table, and using it raises
    :class:`DuplicateNameError` naming every plugin that registered it; other names still work.
    """

    kind: str
    _entries: dict[str, Entry[T]] = field(default_factory=dict)
    _conflicts: dict[str, list[Provider]] = field(default_factory=dict)
    # Set by the plugin loader so that "unknown name" can say which plugin failed to load ...
    load_failures: dict[str, str] = field(default_factory=dict)
    # ... or which the selection disabled: {plugin: "built-in" or ""}.
    disabled: dict[str, str] = field(default_factory=dict)
    # Names joined with MIX ("rotation+context") built from registered ones (pretext tasks:
    # sslkit.tasks.composite), once per name and table; None: such names are unknown.
    compose: Callable[[str, Registry[T]], T] | None = field(default=None, repr=False, compare=False)
    _composed: dict[str, Entry[T]] = field(default_factory=dict, repr=False, compare=False)

    def register(self, name: str, obj: T, provider: Provider) -> None:
        if not isinstance(name, str) or not name or name != name.strip():
            raise DuplicateNameError(
                f"{provider.describe()} registered an invalid {self.kind} name {name!r}: "
                "use a non-empty string without surrounding spaces"
            )
        if name in self._conflicts:
            self._conflicts[name].append(provider)
        elif name in self._entries:
            self._conflicts[name] = [self._entries.pop(name).provider, provider]
        else:
            self._entries[name] = Entry(name, obj, provider)

    def conflicts(self) -> dict[str, list[Provider]]:
        """{name: the providers that all registered it}, for names that are unusable."""
        return {n: list(p) for n, p in sorted(self._conflicts.items())}

    def conflict_message(self, name: str) -> str:
        providers = self._conflicts[name]
        both = " and ".join(p.describe() for p in providers)
        off = " or ".join(f"--plugins -{p.plugin}" for p in providers)
        return (
            f"{self.kind} '{name}' is registered by both {both}; sslkit uses neither: "
            f"uninstall one or disable it with {off} (or SSLKIT_PLUGINS)"
        )

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            if name in self._conflicts:
                raise DuplicateNameError(self.conflict_message(name)) from None
            if self.compose is not None and isinstance(name, str) and MIX in name:
                return self._mix(name)
            family = self._family(name)
            if family is not None:
                return family
            raise UnknownNameError(self._unknown(name)) from None

    def _mix(self, name: str) -> Entry[T]:
        """A mix of registered names, built once per name (its parts' errors raised as they come)."""
        if name not in self._composed:
            assert self.compose is not None
            self._composed[name] = Entry(name, self.compose(name, self), Provider("sslkit"))
        return self._composed[name]

    def _family(self, name: str) -> Entry[T] | None:
        """``prefix/rest`` when ``prefix/`` is registered: a family of names (``timm/resnet18``)
        resolved by its object's ``variant(rest)``, so a plugin need not register every member."""
        prefix, sep, rest = name.partition("/")
        family = self._entries.get(prefix + sep) if sep and rest else None
        if family is None or not hasattr(family.obj, "variant"):
            return None
        return Entry(name, family.obj.variant(rest), family.provider)

    def _unknown(self, name: str) -> str:
        known = sorted(self._entries)
        msg = f"unknown {self.kind} '{name}'{suggest(name, known)}; known: {', '.join(known) or 'none'}"
        if name in self.disabled:  # first-party plugins are named after what they register
            msg += f" (the plugin '{name}' is disabled by --plugins/SSLKIT_PLUGINS: enable it there)"
            return msg
        if name in FIRST_PARTY and self.kind == FIRST_PARTY[name][0]:
            msg += f" ('{name}' is in the {FIRST_PARTY[name][1]} package: pip install {FIRST_PARTY[name][1]})"
        if self.load_failures:
            msg += f" (plugins that failed to load: {', '.join(sorted(self.load_failures))})"
        builtin = [p for p, note in self.disabled.items() if note == "built-in"]
        if builtin:
            msg += (
                f" (the built-in plugin '{builtin[0]}' is disabled by --plugins/SSLKIT_PLUGINS: "
                f"remove '-{builtin[0]}' to use sslkit's {self.kind}s)"
            )
        elif self.disabled:
            msg += f" (plugins disabled by --plugins/SSLKIT_PLUGINS: {', '.join(sorted(self.disabled))})"
        return msg

    def names(self) -> list[str]:
        """Registered names that build something; families (``timm/``) are in :meth:`families`."""
        return [n for n in sorted(self._entries) if not n.endswith("/")]

    def families(self) -> list[str]:
        """Registered name prefixes whose members are resolved on demand (``timm/`` -> ``timm/resnet18``)."""
        return [n for n in sorted(self._entries) if n.endswith("/")]

    def __contains__(self, name: object) -> bool:
        # A contested name is registered (by several plugins): callers that test "in" before
        # get() then reach get(), which names the plugins, instead of "unknown name".
        return name in self._entries or name in self._conflicts

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


def conflict_rows(registry: Registry[Any]) -> list[dict[str, Any]]:
    """One row per contested name: the kind, the name, every provider and the one-line fix."""
    return [
        {
            "kind": registry.kind,
            "name": name,
            "plugins": [p.plugin for p in providers],
            "distributions": [p.distribution for p in providers],
            "message": registry.conflict_message(name),
        }
        for name, providers in registry.conflicts().items()
    ]
