"""``sslkit new-plugin``: write a ready-to-install plugin package from a template.

The package is a complete, working plugin: a ``pyproject.toml`` with its ``sslkit`` entry
point, a ``plugin.py`` that registers it, a minimal implementation that learns, a test that
runs sslkit's conformance checks (:mod:`sslkit.testing`) and a README. ``pip install -e`` it
and its tests pass unchanged; then replace the implementation with your own.

The templates live in :mod:`sslkit.scaffold_templates`.
"""

from __future__ import annotations

import keyword
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING

from . import __version__
from .errors import SSLKitError
from .scaffold_templates import COMMON, KINDS

if TYPE_CHECKING:
    from .plugins import Plugins

NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,39}")


class ScaffoldError(SSLKitError):
    """The plugin name, kind or target folder cannot be used."""


@dataclass(frozen=True)
class Kind:
    """What differs between a task, a backbone and a probe package."""

    label: str  # "pretext task"
    registry: str  # attribute of Plugins: "tasks"
    hook: str  # the hook that registers it
    module: str  # file name of the implementation, without .py
    check: str  # the sslkit.testing function of its test


KIND_INFO = {
    "task": Kind("pretext task", "tasks", "register_pretext_tasks", "task", "check_task"),
    "backbone": Kind("backbone", "backbones", "register_backbones", "backbone", "check_backbone"),
    "probe": Kind("probe", "probes", "register_probes", "probe", "check_probe"),
}


def validate_name(name: str, kind: str, plugins: Plugins | None = None) -> None:
    """One-line :class:`ScaffoldError` if ``name`` is not a usable new plugin name."""
    if kind not in KIND_INFO:
        raise ScaffoldError(f"unknown plugin kind '{kind}'; use --kind task, backbone or probe")
    if not NAME_PATTERN.fullmatch(name) or keyword.iskeyword(name):
        raise ScaffoldError(
            f"invalid plugin name '{name}': use lowercase letters, digits and '_', starting with a letter "
            "(at most 40 characters, not a Python keyword), e.g. 'flip' or 'color_jitter'"
        )
    if plugins is None:
        from .plugins import load_plugins

        plugins = load_plugins(selection="")  # every installed plugin, whatever is selected
    info = KIND_INFO[kind]
    registry = getattr(plugins, info.registry)
    if name in registry:
        raise ScaffoldError(
            f"{info.label} '{name}' is already registered by {registry.entry(name).provider.describe()}; "
            "choose another name"
        )
    for record in plugins.records:
        if record.name == name:
            raise ScaffoldError(
                f"a plugin named '{name}' is already installed ({record.distribution or 'local'}); choose another name"
            )


def _class_name(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_") if part)


def render(name: str, kind: str) -> dict[str, str]:
    """{relative path: file text} of the package for ``name`` (no validation, no writing)."""
    info = KIND_INFO[kind]
    module = f"sslkit_{name}"
    values = {
        "name": name,
        "module": module,
        "dist": f"sslkit-{name.replace('_', '-')}",
        "cls": _class_name(name),
        "kind": kind,
        "label": info.label,
        "registry": info.registry,
        "hook": info.hook,
        "impl": info.module,
        "check": info.check,
        "sslkit_version": __version__,
    }
    files = {**COMMON, **KINDS[kind]}
    out = {}
    for path, text in files.items():
        path = Template(path).substitute(values)
        out[path] = Template(text).substitute(values)
    return out


def write_plugin(name: str, kind: str = "task", directory: str | Path = ".", plugins: Plugins | None = None) -> Path:
    """Write the package ``sslkit-NAME/`` into ``directory`` and return its path.

    Refuses to overwrite: an existing target folder is an error. The package is written into a
    temporary folder next to it and renamed into place, so a failure leaves nothing behind.
    """
    validate_name(name, kind, plugins)
    directory = Path(directory)
    target = directory / f"sslkit-{name.replace('_', '-')}"
    if target.exists():
        raise ScaffoldError(f"'{target}' already exists; remove it or choose another -o folder")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=directory))
    except OSError as exc:
        raise ScaffoldError(f"cannot write into '{directory}': {exc.strerror}; choose another -o folder") from None
    try:
        for rel, text in render(name, kind).items():
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        os.rename(tmp, target)
    except OSError as exc:
        raise ScaffoldError(f"cannot create '{target}': {exc.strerror}") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return target
