"""The backbone's weights as one ``.safetensors`` file that describes itself.

safetensors holds tensors only, so nothing in the file can run code when it is loaded (unlike a
pickle). The run's facts travel in the file's metadata (string values): ``backbone`` (the
config section, JSON, so ``sslkit.create_backbone(name, **options)`` rebuilds the architecture),
``stages``, ``input_shape``, ``mean``, ``std``, ``task``, ``epoch``, ``sslkit_version``. The
weights load with ``strict=True`` into that backbone, or, with ``torchvision=True``, into the
torchvision model itself (backbones that provide ``torchvision_state_dict()``, e.g. ``resnet18``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import ExportError
from ..factory import build_backbone
from ..files import atomic_write
from ..interfaces import Backbone, Exporter
from ..plugins import Plugins, load_plugins
from ..run import LoadedRun, load_run
from .torch_weights import WeightsOptions, backbone_weights

FORMAT = "sslkit.safetensors/1"


@dataclass
class SafetensorsExport:
    path: Path
    backbone: str
    options: dict[str, Any]
    tensors: int
    torchvision: bool
    metadata: dict[str, str]

    def summary(self) -> list[str]:
        return [
            f"wrote {self.path}: {self.tensors} tensors of backbone '{self.backbone}' with its config in the "
            "metadata; load it with:",
            self.snippet(),
        ]

    def snippet(self) -> str:
        """Python that loads the file, for the user to copy."""
        load = f"safetensors.torch.load_file({str(self.path)!r})"
        if self.torchvision and self.backbone.startswith("timm/"):
            return (
                f"import safetensors.torch, timm\nmodel = timm.create_model({self.backbone[5:]!r}, num_classes=0)\n"
                f"model.load_state_dict({load}, strict=True)"
            )
        if self.torchvision:
            return (
                "import safetensors.torch, torchvision\n"
                f"model = torchvision.models.{self.backbone}()  # replace its stem first for small_stem runs\n"
                f"model.load_state_dict({load}, strict=False)  # missing: fc only"
            )
        return f"import sslkit.export\nbackbone = sslkit.export.load_safetensors({str(self.path)!r})"


def export_safetensors(
    run: str | Path | LoadedRun, out: str | Path, *, torchvision: bool = False, plugins: Plugins | None = None
) -> SafetensorsExport:
    """Write the run's backbone weights and its description to ``out`` (atomically)."""
    from safetensors.torch import save_file

    r = load_run(run, plugins)
    name, options, state = backbone_weights(r, torchvision)
    metadata = {
        "format": FORMAT,
        "keys": ("timm" if name.startswith("timm/") else "torchvision") if torchvision else "sslkit",
        "backbone": json.dumps(r.config["backbone"]),
        "stages": json.dumps([[s.name, s.channels, s.stride] for s in r.backbone.stages]),
        "input_shape": json.dumps(list(r.input_shape)),
        "mean": json.dumps(list(r.mean)),
        "std": json.dumps(list(r.std)),
        "task": r.task,
        "epoch": str(r.epoch),
        "sslkit_version": __version__,
    }
    out = Path(out)
    atomic_write(out, lambda tmp: save_file(state, str(tmp), metadata=metadata))
    return SafetensorsExport(out, name, options, len(state), torchvision, metadata)


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of an sslkit ``.safetensors`` file (a one-line error for anything else)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (OSError, SafetensorError) as exc:
        raise ExportError(
            f"cannot read '{path}' as safetensors ({exc}); give a file written by 'sslkit export --format safetensors'"
        ) from None
    if meta.get("format") != FORMAT:
        raise ExportError(f"'{path}' is not an sslkit safetensors export (no '{FORMAT}' metadata)")
    return meta


def load_safetensors(path: str | Path, plugins: Plugins | None = None) -> Backbone:
    """Rebuild the exported backbone from the file's metadata and load its weights strictly (eval mode)."""
    from safetensors.torch import load_file

    meta = read_metadata(path)
    if meta["keys"] != "sslkit":
        raise ExportError(
            f"'{path}' has {meta['keys']} key names: load it into the {meta['keys']} model (see 'sslkit export --help')"
        )
    backbone = build_backbone(json.loads(meta["backbone"]), plugins or load_plugins())
    backbone.load_state_dict(load_file(str(path)), strict=True)
    return backbone.eval()


class SafetensorsExporter(Exporter):
    """The backbone's weights as ``.safetensors`` with the run's description in the metadata."""

    Config = WeightsOptions
    file_name = "backbone.safetensors"
    description = "the backbone's weights plus the run's description in the metadata (nothing that runs code)"

    def export(self, run: LoadedRun, out: Path, plugins: Plugins) -> SafetensorsExport:
        return export_safetensors(run, out, torchvision=self.config.native_keys, plugins=plugins)  # type: ignore[attr-defined]
