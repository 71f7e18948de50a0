"""mkdocs hook: the site's pictures, drawn by sslkit's own commands at build time.

A tiny run is trained on the embedded ``sample`` data (NIN, 3 blocks at width 0.1, a few
hundred images), then the commands a user would type draw what the pages show: a batch of each
first-party task (``show-batch``), the run's first-layer filters, training curves and attention
maps (``viz``), and nearest neighbours of its exported encoder (``export``, ``embed``,
``neighbors``). The commands run in this process through the CLI's own command, so a picture in
the docs is a picture the CLI makes today; the files land in the site as ``generated/*.png``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

NAMES = ("batch-rotation", "batch-context", "filters", "curves", "attention", "neighbors")
TINY = ["--set", "backbone.blocks=3", "--set", "backbone.width=0.1", "--set", "data.subset=256"]


def _sslkit(*args: str) -> None:
    from sslkit.cli import build_command

    code = build_command().main(args=list(args), prog_name="sslkit", standalone_mode=False)
    if code not in (None, 0):
        raise RuntimeError(f"sslkit {' '.join(args)} exited with {code}")


def _sample_files(folder: Path, count: int = 6) -> list[str]:
    """A few images of the embedded sample set as PNG files (the commands that read files)."""
    from PIL import Image

    from sslkit.data.opener import load_dataset
    from sslkit.plugins import load_plugins

    images = load_dataset("sample", load_plugins(), split="test").images[:count]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        path = folder / f"sample-{i}.png"
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(path)
        paths.append(str(path))
    return paths


def draw(out: Path) -> dict[str, Path]:
    """Every picture of :data:`NAMES` under ``out`` (a scratch folder beside them)."""
    work = out / "work"
    run = str(work / "run")
    _sslkit("train", "rotation", "--data", "sample", "--epochs", "3", "--device", "cpu", "--out", run, *TINY)
    for task in ("rotation", "context"):
        _sslkit("show-batch", task, "--count", "3", "-o", str(out / f"batch-{task}.png"))
    files = _sample_files(work / "images")
    _sslkit("viz", "filters", run, "-o", str(out / "filters.png"))
    _sslkit("viz", "curves", run, "-o", str(out / "curves.png"))
    _sslkit("viz", "attention", run, *files[:3], "-o", str(out / "attention.png"))
    _sslkit("export", run, "-o", str(work / "encoder.onnx"))
    _sslkit("embed", str(work / "encoder.onnx"), *files, "-o", str(work / "emb.npy"), "--provider", "cpu")
    _sslkit("neighbors", str(work / "emb.npy"), files[0], "--neighbors", "3", "-o", str(out / "neighbors.png"))
    return {name: out / f"{name}.png" for name in NAMES}


def on_files(files, config):
    from mkdocs.structure.files import File

    folder = Path(tempfile.mkdtemp(prefix="sslkit-docs-pictures-"))
    for name, path in draw(folder).items():
        files.append(File.generated(config, f"generated/{name}.png", abs_src_path=str(path)))
    return files
