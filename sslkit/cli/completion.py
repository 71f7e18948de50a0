"""Shell completion of registered names and config keys, fast (``sslkit train <TAB>``).

Loading the plugins imports torch and every plugin: seconds per TAB. The names are therefore
kept in one small JSON file under :func:`sslkit.files.data_root`, keyed by the installed
distributions that declare ``sslkit`` entry points (name and version) and the plugin selection:
installing, upgrading or removing a plugin changes the key, and the next TAB rebuilds the list
once (slow), every later one reads it (well under 0.3 s; tests/test_cli.py measures it).
"""

from __future__ import annotations

import contextlib
import json
import os
from importlib import metadata
from typing import Any

from ..files import data_root, write_json

# {completed kind: the Plugins registry holding it}
KINDS = {
    "tasks": "tasks",
    "backbones": "backbones",
    "probes": "probes",
    "loggers": "callbacks",
    "exporters": "exporters",
    "recipes": "recipes",
    "datasets": "datasets",
}


def _key() -> str:
    """What the cached names depend on: the plugin distributions, their versions, the selection."""
    dists = sorted(
        f"{ep.dist.name if ep.dist else '?'}=={ep.dist.version if ep.dist else '?'}:{ep.name}"
        for ep in metadata.entry_points(group="sslkit")
    )
    return json.dumps([dists, os.environ.get("SSLKIT_PLUGINS", "")])


def _build() -> dict[str, Any]:
    from ..config import config_keys
    from ..plugins import load_plugins

    plugins = load_plugins()
    names: dict[str, Any] = {kind: getattr(plugins, field).names() for kind, field in KINDS.items()}
    names["backbones"] += plugins.backbones.families()  # timm/ completes to timm/<model> by hand
    names["keys"] = config_keys(plugins)
    return names


def cached_names() -> dict[str, Any]:
    """{kind: names} and {"keys": config keys}, from the cache when it is current."""
    path = data_root() / "completion.json"
    key = _key()
    try:
        cached = json.loads(path.read_text())
        if cached.get("key") == key:
            return dict(cached["names"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    names = _build()
    with contextlib.suppress(OSError):  # a read-only cache folder: complete anyway, slowly
        write_json(path, {"key": key, "names": names})
    return names


def _complete(kind: str, incomplete: str) -> list[str]:
    try:
        names = cached_names().get(kind, [])
    except Exception:  # completion must never print a traceback into the user's shell
        return []
    return [n for n in names if n.startswith(incomplete)]


def complete_tasks(incomplete: str) -> list[str]:
    """A task, or the next one of a mix: ``rotation+c<TAB>`` -> ``rotation+context``."""
    head, _, last = incomplete.rpartition("+")
    prefix = head + "+" if head else ""
    return [prefix + n for n in _complete("tasks", last)]


def complete_backbones(incomplete: str) -> list[str]:
    return _complete("backbones", incomplete)


def complete_probes(incomplete: str) -> list[str]:
    return _complete("probes", incomplete)


def complete_loggers(incomplete: str) -> list[str]:
    return _complete("loggers", incomplete)


def complete_exporters(incomplete: str) -> list[str]:
    return _complete("exporters", incomplete)


def complete_recipes(incomplete: str) -> list[str]:
    return _complete("recipes", incomplete)


def complete_data(incomplete: str) -> list[str]:
    """Registered dataset names (folders: the shell's own file completion)."""
    return _complete("datasets", incomplete)


def complete_keys(incomplete: str) -> list[str]:
    """``--set optim.l<TAB>`` -> ``optim.lr=``, ``optim.lars_eta=`` ..."""
    if "=" in incomplete:
        return []
    return [k + "=" for k in _complete("keys", incomplete)]
