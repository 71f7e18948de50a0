"""Plain PyTorch weights: the backbone's ``state_dict`` alone, out of a training checkpoint.

Loads with ``torch.load(path, weights_only=True)`` and, with ``strict=True``, into the backbone
``sslkit.create_backbone(name, **options)`` builds (the run's ``backbone`` config section). With
``torchvision=True`` the keys are renamed for the torchvision model itself (backbones that
provide ``torchvision_state_dict()``, e.g. ``resnet18``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import Field

from ..errors import ExportError
from ..files import atomic_write
from ..interfaces import Config, Exporter
from ..plugins import Plugins
from ..run import LoadedRun, load_run


@dataclass
class TorchExport:
    path: Path
    backbone: str
    options: dict[str, Any]
    tensors: int
    torchvision: bool

    def summary(self) -> list[str]:
        return [
            f"wrote {self.path}: {self.tensors} tensors of backbone '{self.backbone}'; load it with:",
            self.snippet(),
        ]

    def snippet(self) -> str:
        """Python that loads the file, for the user to copy."""
        if self.torchvision and self.backbone.startswith("timm/"):
            return (
                f"import torch, timm\nmodel = timm.create_model({self.backbone[5:]!r}, num_classes=0)\n"
                f"model.load_state_dict(torch.load({str(self.path)!r}, weights_only=True), strict=True)"
            )
        if self.torchvision:
            stem = ""
            if self.options.get("small_stem", True):  # sslkit's default CIFAR stem (see backbones/resnet.py)
                c = self.options.get("in_channels", 3)
                stem = (
                    f"model.conv1 = torch.nn.Conv2d({c}, 64, 3, stride=1, padding=1, bias=False)\n"
                    "model.maxpool = torch.nn.Identity()\n"
                )
            return (
                f"import torch, torchvision\nmodel = torchvision.models.{self.backbone}()\n{stem}"
                f"model.load_state_dict(torch.load({str(self.path)!r}, weights_only=True), strict=False)  # "
                "missing: fc only"
            )
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return (
            "import torch, sslkit\n"
            f"backbone = sslkit.create_backbone({self.backbone!r}{', ' if opts else ''}{opts})\n"
            f"backbone.load_state_dict(torch.load({str(self.path)!r}, weights_only=True), strict=True)"
        )


def backbone_weights(r: LoadedRun, torchvision: bool) -> tuple[str, dict[str, Any], dict[str, torch.Tensor]]:
    """(backbone name, its options, its weights) of a run: sslkit's keys, or (``torchvision``, the
    ``native`` option) the key names of the model's own library: torchvision's for ``resnet18``,
    timm's for ``timm/<model>`` (backbones with ``native_state_dict()``).

    Each tensor gets its own contiguous CPU storage (no views into the checkpoint): a small file,
    and safetensors refuses shared or strided views."""
    name = r.config["backbone"]["name"]
    options = {k: v for k, v in r.config["backbone"].items() if k != "name"}
    if torchvision:
        convert = getattr(r.backbone, "native_state_dict", None)
        if convert is None:
            raise ExportError(
                f"backbone '{name}' has no torchvision or timm equivalent; drop --native to export sslkit's own keys"
            )
        state = convert()
    else:
        state = r.backbone.state_dict()
    return name, options, {k: v.detach().cpu().clone().contiguous() for k, v in state.items()}


def export_torch(
    run: str | Path | LoadedRun, out: str | Path, *, torchvision: bool = False, plugins: Plugins | None = None
) -> TorchExport:
    """Write the run's backbone ``state_dict`` (float tensors as trained) to ``out``, atomically."""
    r = load_run(run, plugins)
    name, options, state = backbone_weights(r, torchvision)
    out = Path(out)
    atomic_write(out, lambda tmp: torch.save(state, tmp))
    return TorchExport(out, name, options, len(state), torchvision)


class WeightsOptions(Config):
    native: bool = Field(
        False,
        description="key names of the model's own library: torchvision's for resnet18 (replace its stem for "
        "small_stem runs), timm's for timm/<model> (timm.create_model(name, num_classes=0) loads them strictly)",
    )
    torchvision: bool = Field(False, description="the name native had for resnet18: the same switch")

    @property
    def native_keys(self) -> bool:
        return self.native or self.torchvision


class TorchExporter(Exporter):
    """The backbone's plain ``state_dict`` (``torch.load(path, weights_only=True)``)."""

    Config = WeightsOptions
    file_name = "backbone.pt"
    description = "the backbone's state_dict alone"

    def export(self, run: LoadedRun, out: Path, plugins: Plugins) -> TorchExport:
        return export_torch(run, out, torchvision=self.config.native_keys, plugins=plugins)  # type: ignore[attr-defined]
