"""Shell completion of registered names and config keys, fast (``sslkit train <TAB>``).

Loading the plugins imports torch and every plugin: seconds per TAB. The names, and the command
tree that cli/quick_complete.py answers from, are therefore kept in two small JSON files under
:func:`sslkit.files.data_root` (:func:`store_record`), keyed by what they come from (see
:func:`_key`): installing, upgrading or removing a plugin changes the key, and the next TAB
rebuilds them once (slow), every later one reads them (benchmarks/completion_latency.py measures
both).
"""

from __future__ import annotations

import contextlib
import json
import os
import site
from dataclasses import dataclass
from pathlib import Path
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


NAMES_FILE = "completion.json"


def _key() -> str:
    """What the cached names depend on, read cheaply (no package metadata: a TAB has no time).

    Installing, upgrading or removing any distribution adds or removes a ``.dist-info`` folder,
    which changes the modification time of the site-packages folder that holds it; with the
    plugin selection and the CLI's own source (an editable install changes options without a new
    version), that is everything the names and the command tree come from. (Not all of
    ``sys.path``: its first entry differs between ``sslkit`` and ``python -m sslkit``.)
    """
    stamps = []
    for entry in [*site.getsitepackages(), site.getusersitepackages()]:
        with contextlib.suppress(OSError):
            stamps.append(os.stat(entry).st_mtime_ns)
    here = Path(__file__).parent
    sources = max((f.stat().st_mtime_ns for f in here.glob("*.py")), default=0)
    return json.dumps([stamps, os.environ.get("SSLKIT_PLUGINS", ""), sources])


def _names() -> dict[str, Any]:
    from ..config import config_keys
    from ..plugins import load_plugins

    plugins = load_plugins()
    names: dict[str, Any] = {kind: getattr(plugins, field).names() for kind, field in KINDS.items()}
    names["backbones"] += plugins.backbones.families()  # timm/ completes to timm/<model> by hand
    names["keys"] = config_keys(plugins)
    return names


def load_record(filename: str) -> Any | None:
    """What :func:`store_record` kept under ``filename``, if it is current (else None)."""
    try:
        record = json.loads((data_root() / filename).read_text())
        if isinstance(record, dict) and record.get("key") == _key():
            return record["value"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def store_record(filename: str, value: Any) -> None:
    """Keep ``value`` under ``filename``, keyed by :func:`_key`; a read-only cache folder keeps
    nothing (completion still works, slowly)."""
    with contextlib.suppress(OSError):
        write_json(data_root() / filename, {"key": _key(), "value": value})


def cached_names() -> dict[str, Any]:
    """{kind: names} and {"keys": config keys}, from the cache when it is current."""
    names = load_record(NAMES_FILE)
    if not isinstance(names, dict):
        names = _names()
        store_record(NAMES_FILE, names)
    return dict(names)


def complete_names(kind: str, incomplete: str, *, mix: bool = False, suffix: str = "") -> list[str]:
    """The registered names of ``kind`` that complete ``incomplete``.

    ``mix``: the word is a ``+``-joined mix of tasks, complete its last part
    (``rotation+c`` -> ``rotation+context``). ``suffix``: appended to each name (``optim.lr=``);
    a word that already holds it is complete.
    """
    if suffix and suffix in incomplete:
        return []
    head, _, last = incomplete.rpartition("+") if mix else ("", "", incomplete)
    prefix = head + "+" if head else ""
    try:
        names = cached_names().get(kind, [])
    except Exception:  # completion must never print a traceback into the user's shell
        return []
    return [prefix + n + suffix for n in names if n.startswith(last)]


@dataclass(frozen=True)
class NameCompleter:
    """A typer ``autocompletion`` callback that completes one kind of registered name.

    A class, not a closure, so that the quick path (cli/quick_complete.py) can read which kind a
    parameter completes from the command itself and answer without typer.
    """

    kind: str
    mix: bool = False
    suffix: str = ""

    def __call__(self, incomplete: str) -> list[str]:
        return complete_names(self.kind, incomplete, mix=self.mix, suffix=self.suffix)


complete_tasks = NameCompleter("tasks", mix=True)
complete_backbones = NameCompleter("backbones")
complete_probes = NameCompleter("probes")
complete_loggers = NameCompleter("loggers")
complete_exporters = NameCompleter("exporters")
complete_recipes = NameCompleter("recipes")
complete_data = NameCompleter("datasets")  # folders: the shell's own file completion
complete_keys = NameCompleter("keys", suffix="=")  # --set optim.l<TAB> -> optim.lr=, ...
