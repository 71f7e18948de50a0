"""sslkit: plugin-based self-supervised learning for PyTorch.

``sslkit.list_backbones()``, ``sslkit.create_backbone(name, **cfg)``, ``sslkit.train(task, ...)``
and ``sslkit.load(run_dir)`` are the short path (see :mod:`sslkit.api`).

The public surface is imported lazily, so ``sslkit --help`` does not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "hookimpl": "sslkit.hookspecs",  # lazy too: a TAB (cli/quick_complete.py) imports no pluggy
    "Backbone": "sslkit.interfaces",
    "PretextTask": "sslkit.interfaces",
    "Probe": "sslkit.interfaces",
    "ProbeConfig": "sslkit.interfaces",
    "Config": "sslkit.interfaces",
    "Stage": "sslkit.interfaces",
    "Callback": "sslkit.interfaces",
    "Exporter": "sslkit.interfaces",
    "Recipe": "sslkit.interfaces",
    "ProbeJob": "sslkit.interfaces",
    "Loss": "sslkit.interfaces",
    "RunInfo": "sslkit.interfaces",
    "StepInfo": "sslkit.interfaces",
    "View": "sslkit.interfaces",
    "SSLKitError": "sslkit.errors",
    "load_plugins": "sslkit.plugins",
    "Plugins": "sslkit.plugins",
    "RunConfig": "sslkit.config",
    "create_backbone": "sslkit.factory",
    "create_task": "sslkit.factory",
    "create_probe": "sslkit.factory",
    "load_dataset": "sslkit.data.opener",
    "ImageData": "sslkit.data.datasets",
    "train": "sslkit.api",
    "load": "sslkit.api",
    "list_tasks": "sslkit.api",
    "list_backbones": "sslkit.api",
    "list_probes": "sslkit.api",
    "list_loggers": "sslkit.api",
    "Run": "sslkit.api",
    "LoadedRun": "sslkit.run",
    "RunContext": "sslkit.engine.callbacks",
    "load_checkpoint": "sslkit.checkpoint",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sslkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
