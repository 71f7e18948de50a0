"""Shell completion of registered names (``sslkit export --format <TAB>``)."""

from __future__ import annotations


def _names(kind: str, incomplete: str) -> list[str]:
    from ..plugins import load_plugins

    try:
        registry = getattr(load_plugins(), kind)
    except Exception:  # completion must never print a traceback into the user's shell
        return []
    return [n for n in registry.names() if n.startswith(incomplete)]


def complete_exporters(incomplete: str) -> list[str]:
    return _names("exporters", incomplete)


def complete_recipes(incomplete: str) -> list[str]:
    return _names("recipes", incomplete)
