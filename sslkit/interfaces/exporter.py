"""The exporter interface: one file format for a trained encoder (ONNX, plain weights, safetensors ...).

A plugin adds a format with ``register_exporters``: ``register("npz", NpzExporter)``; then
``sslkit export RUN --format npz`` and ``sslkit.load(RUN).export(format="npz")`` write it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Protocol

from .base import Config

_Config = Config  # inside Exporter, Config names the exporter's own options class


class ExportReport(Protocol):
    """What an exporter returns: the file it wrote and the lines ``sslkit export`` prints about it."""

    path: Path

    def summary(self) -> list[str]: ...


class Exporter:
    """Writes a trained run's encoder in one file format.

    Built from a validated instance of its ``Config`` (the format's own options, e.g. ONNX's
    ``layer``, ``pool``, ``fp16``; an option the format does not have is a one-line error).
    :meth:`export` writes ``out`` through :func:`sslkit.files.atomic_write` (the engine already
    holds the output's lock and has checked that ``out`` can be written) and returns an
    :class:`ExportReport`.
    """

    Config: ClassVar[type[Config]] = Config
    file_name: ClassVar[str] = "encoder.bin"  # the default output, in the run folder
    description: ClassVar[str] = ""  # one line: what the file holds

    def __init__(self, config: _Config) -> None:
        self.config = config

    def export(self, run: Any, out: Path, plugins: Any) -> ExportReport:
        """Write ``run`` (a :class:`sslkit.run.LoadedRun`: backbone, config, input shape,
        normalisation) to ``out``; ``plugins`` are the loaded :class:`sslkit.plugins.Plugins`."""
        raise NotImplementedError
