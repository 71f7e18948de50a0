"""sslkit.data's imports point down and never form a cycle, function-level (lazy) imports included.

Read from the source (every ``import`` statement, wherever it stands), so an import inside a
function counts as much as one at the top: two modules that each import the other lazily are a
cycle all the same (``datasets.py`` and ``source.py`` once were).
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import sslkit

ROOT = Path(sslkit.__file__).parent
# What sslkit.data may import from the rest of sslkit: the layers below it (see the architecture notes).
BELOW_DATA = {
    "sslkit",
    "sslkit.files",
    "sslkit.images",
    "sslkit.errors",
    "sslkit.hookspecs",
    "sslkit.registry",
    "sslkit.plugins",
    "sslkit.config",
    "sslkit.interfaces",
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_package(name: str) -> bool:
    return (ROOT.parent / Path(*name.split(".")) / "__init__.py").is_file()


def _target(base: str, name: str) -> str:
    """``from base import name``: the module ``base.name``, a lazily exported name's module, or ``base``."""
    full = f"{base}.{name}"
    if (ROOT.parent / Path(*full.split("."))).with_suffix(".py").is_file() or _is_package(full):
        return full
    if _is_package(base):
        lazy = getattr(importlib.import_module(base), "_LAZY", {})
        if name in lazy:
            return lazy[name]
    return base


def _imports(path: Path) -> set[str]:
    """Every sslkit module ``path`` imports, anywhere in the file."""
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("sslkit")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            if base.startswith("sslkit"):
                found |= {_target(base, a.name) for a in node.names}
    return found - {me}


def _graph() -> dict[str, set[str]]:
    files = sorted((ROOT / "data").rglob("*.py")) + [ROOT / "files.py", ROOT / "images.py"]
    return {_module_name(f): _imports(f) for f in files}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle among the graph's modules, or None (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle_in_data():
    assert _cycle(_graph()) is None, " -> ".join(_cycle(_graph()) or [])


def test_the_cycle_finder_finds_a_lazy_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_data_imports_point_down():
    for module, imports in _graph().items():
        allowed = BELOW_DATA if module.startswith("sslkit.data") else {"sslkit.errors"}
        up = {m for m in imports if not m.startswith("sslkit.data") and m not in allowed}
        if module in ("sslkit.files", "sslkit.images"):
            up |= {m for m in imports if m.startswith("sslkit.data")}
        assert not up, f"{module} imports {sorted(up)}, above it"


def test_one_opener():
    """The dispatch "registered name | packed store | folder" lives in sslkit.data.opener only: no
    other module of sslkit.data opens a store from a spec or asks the registry for a dataset."""
    for path in sorted((ROOT / "data").glob("*.py")):
        text = path.read_text(encoding="utf-8")
        if path.name in ("opener.py", "datasets.py"):
            continue
        assert "plugins.datasets" not in text, path.name
        assert "def load_dataset" not in text and "def open_source" not in text, path.name
