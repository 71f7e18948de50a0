"""THE run loader: a run folder (or its checkpoint.pt) -> :class:`Run`, the trained backbone and
the facts needed to use it. The CLI, probes, export, viz and the Python API all load runs here.

    run = sslkit.load("runs/rotnet")
    emb = run.embed(["cat.jpg", "dog.png"])          # [2, C] features, normalised as in training
    run.export("encoder.onnx")                         # or format="torch" / "safetensors"
    report = run.probe(probe="knn")                    # the probe report (probe.json's content)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union

import torch
from torch import Tensor

from .engine.checkpoint import load_checkpoint, resolve_checkpoint
from .errors import CheckpointError, ConfigError, DataError
from .interfaces import Backbone
from .plugins import Plugins, load_plugins

if TYPE_CHECKING:
    from PIL import Image

ImageInput = Union[str, Path, "Image.Image", Tensor, Sequence[Union[str, Path, "Image.Image"]]]
ExportFormat = Literal["onnx", "torch", "safetensors"]
EXPORT_FILES = {"onnx": "encoder.onnx", "torch": "backbone.pt", "safetensors": "backbone.safetensors"}


def build_backbone(spec: Mapping[str, Any], plugins: Plugins) -> Backbone:
    """A run config's ``backbone`` section (``{"name": ..., **options}``) -> a fresh backbone."""
    from .factory import create_backbone

    return create_backbone(spec["name"], plugins, **{k: v for k, v in spec.items() if k != "name"})


@dataclass
class Run:
    """A trained run: its backbone (eval mode, trained weights) and what a consumer needs."""

    backbone: Backbone
    config: dict[str, Any]  # the full run config, as in RUN/config.json
    input_shape: tuple[int, int, int]  # (C, H, W) of the training images
    mean: tuple[float, ...]
    std: tuple[float, ...]
    task: str
    epoch: int
    path: Path  # the checkpoint file
    run_dir: Path | None  # the run folder, when one was given
    history: list[dict[str, Any]] = field(default_factory=list)  # metrics per epoch
    classes: list[str] | None = None  # the training data's class names, when it had labels
    plugins: Plugins | None = field(default=None, repr=False)

    @property
    def folder(self) -> Path:
        return self.run_dir or self.path.parent

    def _plugins(self) -> Plugins:
        if self.plugins is None:
            self.plugins = load_plugins()
        return self.plugins

    def images(self, images: ImageInput) -> Tensor:
        """Image files, folders, PIL images or tensors -> uint8-valued [N, C, H, W] (see :meth:`embed`)."""
        return as_images(images, self.input_shape)

    @torch.no_grad()
    def embed(
        self,
        images: ImageInput,
        *,
        layer: str | None = None,
        pool: Literal["avg", "flatten", "none"] = "avg",
        batch_size: int = 256,
        device: str | torch.device = "cpu",
    ) -> Tensor:
        """Features of ``images`` at stage ``layer`` (default: RUN/probe.json's best layer, else the last).

        ``images``: paths or folders (decoded, resized and centre-cropped to the training size),
        PIL images, or a tensor [N, C, H, W] / [C, H, W] that is uint8 (0..255) or float (0..1).
        They are normalised with the run's mean/std, exactly as in training. Returns float32
        [N, C] (``avg``), [N, C*H*W] (``flatten``) or [N, C, H, W] (``none``) on the CPU.
        """
        from .data.augment import normalize
        from .export.encoder import Encoder, default_layer

        x = self.images(images)
        encoder = Encoder(self.backbone, layer or default_layer(self), pool).to(device).eval()
        parts = [
            encoder(normalize(x[i : i + batch_size].to(device), self.mean, self.std)).cpu()
            for i in range(0, x.shape[0], batch_size)
        ]
        return torch.cat(parts)

    def export(self, out: str | Path | None = None, *, format: ExportFormat = "onnx", **options: Any) -> Any:
        """Write the encoder: ``onnx`` (verified; options ``layer``, ``pool``, ``fp16``, ``images``),
        ``torch`` or ``safetensors`` (the backbone's weights; option ``torchvision``). ``out``
        defaults to the run folder's encoder.onnx / backbone.pt / backbone.safetensors."""
        if format not in EXPORT_FILES:
            raise ConfigError(f"unknown export format '{format}': use {', '.join(EXPORT_FILES)}")
        out = Path(out) if out is not None else self.folder / EXPORT_FILES[format]
        if format == "onnx":
            from .export.onnx import export_onnx

            return export_onnx(self, out, plugins=self._plugins(), **options)
        if format == "torch":
            from .export.torch_weights import export_torch

            return export_torch(self, out, plugins=self._plugins(), **options)
        from .export.safetensors_export import export_safetensors

        return export_safetensors(self, out, plugins=self._plugins(), **options)

    def probe(
        self,
        data: str | None = None,
        *,
        probe: str = "knn",
        layers: Sequence[str] = (),
        test_data: str | None = None,
        **settings: Any,
    ) -> dict[str, Any]:
        """Train and evaluate ``probe`` on the frozen trunk (default data: the run's own dataset);
        returns the report ``sslkit probe`` writes as probe.json (``report["layers"][layer]["test_acc"]``).
        ``settings`` are :class:`sslkit.probes.engine.ProbeSettings` fields (``options``, ``seed``, ``device`` ...)."""
        from .probes.engine import ProbeSettings, Trunk, load_splits, run_probes

        plugins = self._plugins()
        chosen = ProbeSettings(probe=probe, layers=tuple(layers), **settings)
        data_cfg = self.config["data"]
        trunk = Trunk(self.backbone, self.mean, self.std, describe(self), self.config, data_cfg.get("image_size"))
        splits = load_splits(data or data_cfg["name"], test_data, plugins, chosen, data_cfg.get("image_size"))
        report = run_probes(trunk, splits, plugins, chosen)
        report["run"] = str(self.folder)
        return report


def describe(run: Run) -> str:
    return f"pretrained: {run.run_dir or run.path} ({run.task}, epoch {run.epoch})"


def load_run(run: str | Path | Run, plugins: Plugins | None = None, *, map_location: str | torch.device = "cpu") -> Run:
    """A run folder (or checkpoint file) -> its backbone with the trained weights, in eval mode."""
    if isinstance(run, Run):
        return run
    plugins = plugins or load_plugins()
    path = resolve_checkpoint(run)
    state = load_checkpoint(path, map_location=map_location)
    config = state["config"]
    backbone = build_backbone(config["backbone"], plugins)
    try:
        backbone.load_state_dict(state["backbone"], strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(
            f"'{path}': backbone weights do not fit backbone '{config['backbone']['name']}' ({first}); "
            "was the backbone plugin changed since training?"
        ) from None
    data = config["data"]
    if data.get("mean") is None or data.get("std") is None:
        raise CheckpointError(f"'{path}': the run's config has no data.mean/std; re-train with a current sslkit")
    facts = state.get("data", {})
    return Run(
        backbone=backbone.eval(),
        config=config,
        input_shape=tuple(int(s) for s in facts["shape"]),  # type: ignore[arg-type]
        mean=tuple(data["mean"]),
        std=tuple(data["std"]),
        task=config["task"]["name"],
        epoch=int(state.get("epoch", 0)),
        path=path,
        run_dir=Path(run) if Path(run).is_dir() else None,
        history=list(state.get("history", [])),
        classes=facts.get("classes"),
        plugins=plugins,
    )


def as_images(images: ImageInput, shape: Sequence[int]) -> Tensor:
    """Anything image-like -> [N, C, H, W] with values in 0..255 (uint8, or float for float input)."""
    if isinstance(images, Tensor):
        x = images if images.dim() == 4 else images.unsqueeze(0)
        if x.dim() != 4 or x.shape[1] != shape[0]:
            raise DataError(
                f"image tensor of shape {list(images.shape)}: expected [N, {shape[0]}, H, W] or [{shape[0]}, H, W]"
            )
        return x if x.dtype == torch.uint8 else x.float() * 255.0  # floats are 0..1 (torchvision's ToTensor)
    from PIL import Image

    from .deploy import fit
    from .files import list_images

    items = [images] if isinstance(images, (str, Path, Image.Image)) else list(images)
    arrays = []
    for item in items:
        if isinstance(item, Image.Image):
            arrays.append(fit(item, shape))
            continue
        try:
            files = list_images([item])
        except (FileNotFoundError, LookupError) as exc:
            raise DataError(f"{exc}; give image files, folders, PIL images or a tensor") from None
        for p in files:
            try:
                with Image.open(p) as im:
                    arrays.append(fit(im, shape))
            except OSError:
                raise DataError(f"cannot read image '{p}'; give image files (jpg, png, ...)") from None
    if not arrays:
        raise DataError("no images given: pass image files, folders, PIL images or a tensor")
    import numpy as np

    return torch.from_numpy(np.stack(arrays))
