"""The one export entry: a registered format's options validated, the output checked and locked,
the exporter run. ``sslkit export`` and ``sslkit.load(run).export()`` both call :func:`export_run`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..config import validate_section
from ..errors import ConfigError, ExportError
from ..files import OutputLock
from ..interfaces import Config, ExportReport
from ..plugins import Plugins, load_plugins
from ..registry import suggest
from ..run import LoadedRun, load_run


def exporter_options(format: str, options: dict[str, Any], plugins: Plugins) -> Config:
    """The format's validated options; an option the format does not have names the ones it has."""
    cls = plugins.exporters.get(format)
    known = list(cls.Config.model_fields)
    for key in options:
        if key not in known:
            raise ConfigError(
                f"--format {format} has no option '{key}'{suggest(key, known)}; "
                f"its options: {', '.join(known) or 'none'}"
            )
    return validate_section(cls.Config, options, f"--format {format} option ")


def output_path(out: str | Path | None, default_folder: Path, file_name: str) -> Path:
    """Where to write: ``out``, or ``file_name`` inside it when it is (or ends like) a folder,
    or ``default_folder / file_name``. Fails before the (slow) export when it cannot be written."""
    if out is None:
        path = default_folder / file_name
    elif str(out).endswith(("/", os.sep)) or Path(out).is_dir():
        path = Path(out) / file_name  # `-o exports/`: a folder, created if need be
    else:
        path = Path(out)
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ExportError(f"-o '{out}': '{ancestor}' is a file, not a folder; choose another output path")
    if not os.access(ancestor, os.W_OK):
        raise ExportError(
            f"-o '{out}': cannot write in '{ancestor}' (permission denied); choose a folder you can write to"
        )
    return path


def export_run(
    run: str | Path | LoadedRun,
    format: str = "onnx",
    out: str | Path | None = None,
    *,
    plugins: Plugins | None = None,
    **options: Any,
) -> ExportReport:
    """Write ``run``'s encoder as ``format`` (a registered exporter: ``onnx``, ``torch``,
    ``safetensors`` or a plugin's) to ``out`` (default: the run folder's file of that format; a
    folder gets that file inside it), holding the file's output lock. ``options`` are the
    format's own (ONNX: ``layer``, ``pool``, ``fp16``, ``images``; weights: ``torchvision``)."""
    plugins = plugins or load_plugins()
    cls = plugins.exporters.get(format)  # an unknown format: one line naming the registered ones
    config = exporter_options(format, options, plugins)
    loaded = load_run(run, plugins)
    path = output_path(out, loaded.folder, cls.file_name)
    with OutputLock(path, "export", folder=False):
        return cls(config).export(loaded, path, plugins)
