"""The shape of the house, as docs/architecture.md draws it: imports point down through the layers
and never form a cycle (function-level and type-only imports included), and functions fit on a
screen. Read from the source text (ast), so nothing is imported or run."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "sslkit"

# Top to bottom; a module may import its own layer (without a cycle) and the layers below it.
# Keys are module paths relative to sslkit/ (a folder stands for every module in it).
LAYERS: list[list[str]] = [
    ["cli", "__main__"],
    ["api", "progress"],
    ["reproduce"],
    ["probes", "export", "testing", "pytest_plugin", "scaffold", "scaffold_templates"],
    ["engine", "viz", "loggers"],
    ["data", "factory", "run", "checkpoint", "deploy", "embed_stream", "retrieval", "backbones", "distributed", "knn"],
    ["plugins", "registry", "interfaces", "config", "tasks"],
    ["hookspecs", "files", "errors", "images", "mappings"],
]
MAX_FUNCTION_LINES = 80


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if p != PACKAGE / "__init__.py"}


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom | ast.Import, known: set[str]) -> list[str]:
    """The sslkit modules an import statement loads (relative and absolute, names that are modules too)."""
    if isinstance(node, ast.Import):
        return [a.name.removeprefix("sslkit.") for a in node.names if a.name.startswith("sslkit.")]
    if node.level == 0:
        if not (node.module or "").startswith("sslkit"):
            return []
        base = (node.module or "").removeprefix("sslkit").removeprefix(".")
    else:
        parts = importer.split(".") if importer else []
        package = parts if is_package else parts[:-1]
        up = package[: len(package) - (node.level - 1)] if node.level > 1 else package
        base = ".".join([*up, *([node.module] if node.module else [])])
    targets = []
    for alias in node.names:
        sub = f"{base}.{alias.name}" if base else alias.name
        targets.append(sub if sub in known else base)
    return [t for t in targets if t]  # "" is the package root (sslkit/__init__: the lazy facade)


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        deps: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _resolve(name, path.name == "__init__.py", node, known):
                    while target and target not in known:
                        target = target.rpartition(".")[0]
                    if target and target != name:
                        deps.add(target)
        graph[name] = deps
    return graph


def _layer(module: str) -> int:
    for depth, names in enumerate(LAYERS):
        for prefix in names:
            if module == prefix or module.startswith(prefix + "."):
                return depth
    raise AssertionError(f"sslkit.{module} is in no layer of tests/test_architecture.py: add it where it belongs")


def test_every_module_has_a_layer():
    for module in _modules():
        _layer(module)


def test_imports_point_down():
    up = [
        f"sslkit.{a} (layer {_layer(a)}) imports sslkit.{b} (layer {_layer(b)})"
        for a, deps in _graph().items()
        for b in deps
        if _layer(b) < _layer(a)
    ]
    assert not up, "imports pointing up:\n" + "\n".join(sorted(up))


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    cycles = _cycles(_graph())
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_checker_sees_cycles_and_upward_imports():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _layer("cli.train_cmd") < _layer("engine.trainer") < _layer("data.training") < _layer("errors")
    graph = _graph()
    assert "engine.trainer" in graph["cli.train_cmd"] or "api" in graph["cli.train_cmd"]
    assert "checkpoint" in graph["run"] and "files" in graph["checkpoint"]


def _own_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines of a function's body, docstring and the signatures of nested functions (a CLI
    command's option list) not counted."""
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
        body = body[1:]
    if not body:
        return 0
    lines = set(range(body[0].lineno, (node.end_lineno or body[0].lineno) + 1))
    for inner in ast.walk(node):
        if inner is not node and isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef)) and inner.body:
            start = min([inner.lineno, *(d.lineno for d in inner.decorator_list)])
            lines -= set(range(start, inner.body[0].lineno))
    return len(lines)


def test_functions_fit_on_a_screen():
    long = []
    for path in _modules().values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = _own_lines(node)
                if n > MAX_FUNCTION_LINES:
                    long.append(f"sslkit/{path.relative_to(PACKAGE)}:{node.lineno} {node.name}: {n} lines")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines (split them):\n" + "\n".join(long)
