"""mkdocs hook: replace ``<!-- config-reference -->`` with tables of every configuration key.

The tables are generated from the pydantic models at build time (``RunConfig`` and its sections,
then the ``Config`` of every installed pretext task and backbone), so a key added to a model
appears here with its type, default, constraints and description without touching the page.
"""

from __future__ import annotations

import json
import types
import typing
from typing import Any

MARKER = "<!-- config-reference -->"
BOUNDS = (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<"))


def type_name(annotation: Any) -> str:
    """``int | None`` -> 'int or null', ``Literal['a', 'b']`` -> '"a" or "b"', tuples -> lists."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is type(None):
        return "null"
    if origin is typing.Literal:
        return " or ".join(json.dumps(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"list of {type_name(args[0])}"
        return f"[{', '.join(type_name(a) for a in args)}]"
    if origin in (dict, typing.Mapping) or annotation is dict:
        return "table"
    return getattr(annotation, "__name__", str(annotation))


def plain(value: Any) -> Any:
    """A default as JSON would show it, floats at 6 significant digits (0.75, 1.33333, not
    1.3333333333333333), pydantic models as their fields."""
    if hasattr(value, "model_dump"):
        return plain(value.model_dump(mode="json"))
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def default_text(field: Any) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if hasattr(value, "model_fields") and hasattr(type(value), "model_fields") and _is_section(field):
        return "(section)"
    return f"`{json.dumps(plain(value), default=str)}`"


def _is_section(field: Any) -> bool:
    annotation = field.annotation
    return isinstance(annotation, type) and hasattr(annotation, "model_fields")


def rows(model: Any, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(key, type, default, description) for every field, sections flattened to ``a.b`` keys."""
    out: list[tuple[str, str, str, str]] = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
            out += rows(annotation, f"{prefix}{name}.")
            continue
        bounds = [
            f"{sym} {getattr(m, attr)}"
            for m in field.metadata
            for attr, sym in BOUNDS
            if getattr(m, attr, None) is not None
        ]
        kind = type_name(annotation) + (f" ({', '.join(bounds)})" if bounds else "")
        description = (field.description or "").replace("|", "\\|").replace("\n", " ")
        out.append((f"`{prefix}{name}`", kind.replace("|", "\\|"), default_text(field), description))
    return out


def table(model: Any, prefix: str = "") -> str:
    lines = ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    lines += [f"| {k} | {t} | {d} | {s} |" for k, t, d, s in rows(model, prefix)]
    return "\n".join(lines)


def render() -> str:
    from sslkit.config import RunConfig
    from sslkit.plugins import load_plugins
    from sslkit.registry import FIRST_PARTY

    parts = ["### Run", "", table(RunConfig), ""]
    plugins = load_plugins(selection="")
    # sslkit's own and first-party plugins only: the page must not depend on what else is installed
    ours = {"sslkit"} | {dist for _, dist in FIRST_PARTY.values()}
    for section, registry in (("task", plugins.tasks), ("backbone", plugins.backbones)):
        for entry in registry:
            if entry.provider.distribution not in ours:
                continue
            provider = entry.provider.distribution or entry.provider.plugin
            name = f"{entry.name}<model>" if entry.name.endswith("/") else entry.name  # a family: timm/<model>
            parts += [
                f'### `{section}.name = "{name}"` ({provider})',
                "",
                table(entry.obj.Config, f"{section}."),
                "",
            ]
    return "\n".join(parts)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, render())
