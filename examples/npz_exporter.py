"""A new export format is one file: an ``sslkit.Exporter`` and its registration line.

This file is a complete plugin module. In a package, one entry point makes it a plugin for
every command (``[project.entry-points.sslkit] npz = "my_package.npz_exporter"``), and then
``sslkit export RUN --format npz --set dtype=float16`` works; here, run as a script, it is
loaded as a local plugin, trains a tiny run and exports it through the same entry as the CLI.

    python examples/npz_exporter.py [OUT_FOLDER]
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

import sslkit
from sslkit import Config, Exporter, hookimpl
from sslkit.files import atomic_write


class NpzOptions(Config):
    dtype: Literal["float32", "float16"] = Field("float32", description="the arrays' dtype")


@dataclass
class NpzReport:
    """What the exporter returns: the file, and the lines ``sslkit export`` prints."""

    path: Path
    arrays: int

    def summary(self) -> list[str]:
        return [f"wrote {self.path}: {self.arrays} arrays; load them with numpy.load({str(self.path)!r})"]


class NpzExporter(Exporter):
    """The backbone's floating-point weights as a numpy ``.npz`` archive, keyed like its state_dict."""

    Config = NpzOptions
    file_name = "backbone.npz"  # the default output, in the run folder
    description = "the backbone's weights as numpy arrays"

    def export(self, run, out: Path, plugins) -> NpzReport:
        dtype = self.config.dtype  # type: ignore[attr-defined]
        state = run.backbone.state_dict()
        arrays = {k: v.detach().cpu().numpy().astype(dtype) for k, v in state.items() if v.is_floating_point()}

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a name
                np.savez(f, **arrays)

        atomic_write(out, write)  # the one atomic writer: a crash never leaves half a file at `out`
        return NpzReport(out, len(arrays))


@hookimpl
def register_exporters(register):
    register("npz", NpzExporter)  # the one registration line


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "npz-example")
    plugins = sslkit.load_plugins(extra=[sys.modules[__name__]])
    assert "npz" in plugins.exporters.names()
    tiny = {"epochs": 1, "backbone.width": 0.1, "backbone.blocks": 3, "data.subset": 64, "data.batch_size": 32}
    run = sslkit.train("rotation", out / "run", data="sample", device="cpu", plugins=plugins, **tiny)
    report = run.export(format="npz", dtype="float16")  # what `sslkit export RUN --format npz` calls
    print("\n".join(report.summary()))
    weights = run.backbone.state_dict()
    with np.load(report.path) as archive:
        assert report.path == run.folder / "backbone.npz" and len(archive.files) == report.arrays
        for key in archive.files:
            assert archive[key].dtype == np.float16 and archive[key].shape == tuple(weights[key].shape)
