"""Getting an encoder out of sslkit, in any registered format: ONNX (verified, self-describing),
plain PyTorch weights, safetensors (weights plus the run's description), or a plugin's.

:func:`export_run` is the one entry: ``sslkit export`` and ``sslkit.load(run).export()`` both call
it. The formats are :class:`sslkit.Exporter` plugins (``register_exporters``); the library
functions ``export_onnx``, ``export_torch`` and ``export_safetensors`` stay importable. The ONNX
file runs without PyTorch through :mod:`sslkit.deploy`.
"""

from __future__ import annotations

import importlib
from typing import Any

# Imported lazily: loading the built-in export plugin (sslkit.export.plugin, at every command)
# must not import onnx and torch.
_LAZY = {
    "export_run": "sslkit.export.runner",
    "exporter_options": "sslkit.export.runner",
    "output_path": "sslkit.export.runner",
    "ExportResult": "sslkit.export.onnx",
    "export_encoder": "sslkit.export.onnx",
    "export_onnx": "sslkit.export.onnx",
    "SafetensorsExport": "sslkit.export.safetensors_export",
    "export_safetensors": "sslkit.export.safetensors_export",
    "load_safetensors": "sslkit.export.safetensors_export",
    "TorchExport": "sslkit.export.torch_weights",
    "export_torch": "sslkit.export.torch_weights",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sslkit.export' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
