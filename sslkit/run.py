"""THE run loader: a run folder (or its checkpoint.pt) -> :class:`LoadedRun`, the trained backbone
and the facts needed to use it. The CLI, probes, export, viz and the Python API all load runs here
(``sslkit.load`` returns the API's :class:`sslkit.api.Run`, a LoadedRun that also exports and probes).

Also what is cut out of a run to use it: the :class:`Encoder` (the backbone up to one stage, then
pooled) and the default stage to cut at (:func:`default_layer`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .checkpoint import load_checkpoint, resolve_checkpoint
from .errors import CheckpointError, ConfigError, DataError
from .factory import build_backbone
from .interfaces import Backbone
from .plugins import Plugins, load_plugins

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

ImageInput = Union[str, Path, "Image.Image", Tensor, Sequence[Union[str, Path, "Image.Image"]]]
Pool = Literal["avg", "flatten", "none"]
POOLS = ("avg", "flatten", "none")
PROBE_RESULTS = "probe.json"


@dataclass
class LoadedRun:
    """A trained run: its backbone (eval mode, trained weights) and what a consumer needs."""

    backbone: Backbone = field(repr=False)
    config: dict[str, Any] = field(repr=False)  # the full run config, as in RUN/config.json
    input_shape: tuple[int, int, int]  # (C, H, W) of the training images
    mean: tuple[float, ...]
    std: tuple[float, ...]
    task: str
    epoch: int
    path: Path  # the checkpoint file
    run_dir: Path | None  # the run folder, when one was given
    history: list[dict[str, Any]] = field(default_factory=list, repr=False)  # metrics per epoch
    classes: list[str] | None = field(default=None, repr=False)  # the training data's class names
    plugins: Plugins | None = field(default=None, repr=False)

    @property
    def folder(self) -> Path:
        return self.run_dir or self.path.parent

    @property
    def backbone_name(self) -> str:
        return str(self.config["backbone"]["name"])

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
        pool: Pool = "avg",
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

        x = self.images(images)
        encoder = Encoder(self.backbone, layer or default_layer(self), pool).to(device).eval()
        parts = [
            encoder(normalize(x[i : i + batch_size].to(device), self.mean, self.std)).cpu()
            for i in range(0, x.shape[0], batch_size)
        ]
        return torch.cat(parts)


def describe(run: LoadedRun) -> str:
    return f"pretrained: {run.run_dir or run.path} ({run.task}, epoch {run.epoch})"


def load_run(
    run: str | Path | LoadedRun, plugins: Plugins | None = None, *, map_location: str | torch.device = "cpu"
) -> LoadedRun:
    """A run folder (or checkpoint file) -> its backbone with the trained weights, in eval mode."""
    if isinstance(run, LoadedRun):
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
    return LoadedRun(
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


class Encoder(nn.Module):
    """Normalised images [B, C, H, W] float32 -> features of stage ``layer``.

    ``pool``: ``avg`` -> [B, C] (global average over the map), ``flatten`` -> [B, C*H*W],
    ``none`` -> [B, C, H, W]. With ``half`` the backbone runs in float16 (its weights must
    already be float16) while inputs and outputs stay float32, so a consumer never converts.
    """

    def __init__(self, backbone: Backbone, layer: str, pool: str = "avg", half: bool = False) -> None:
        super().__init__()
        if pool not in POOLS:
            raise ConfigError(f"unknown pool '{pool}': use one of {', '.join(POOLS)}")
        self.backbone = backbone
        self.layer = backbone.stage(layer).name  # an unknown stage is a one-line error here
        self.pool = pool
        # Not ``self.half``: that would hide nn.Module.half() (encoder.half() would call a bool).
        self.fp16 = half

    def forward(self, images: Tensor) -> Tensor:
        x = images.half() if self.fp16 else images
        f = self.backbone(x, [self.layer])[self.layer]
        if self.pool == "avg":
            f = F.adaptive_avg_pool2d(f, 1).flatten(1)
        elif self.pool == "flatten":
            f = f.flatten(1)
        return f.float() if self.fp16 else f


def default_layer(run: LoadedRun) -> str:
    """The stage named by ``RUN/probe.json`` ("best_layer", written by probing), else the last."""
    names = run.backbone.stage_names
    probe = run.run_dir / PROBE_RESULTS if run.run_dir else None
    if probe is None or not probe.is_file():
        return names[-1]
    try:
        best = json.loads(probe.read_text()).get("best_layer")
    except (OSError, ValueError, AttributeError):
        log.warning("could not read %s; exporting the last stage '%s' (use --layer to choose)", probe, names[-1])
        return names[-1]
    if best is None:
        return names[-1]
    if best not in names:
        raise CheckpointError(
            f"{probe} names best_layer '{best}', which backbone '{run.config['backbone']['name']}' "
            f"does not have (stages: {', '.join(names)}); pass --layer"
        )
    log.info("exporting stage '%s', the best layer in %s", best, probe)
    return best


def output_shape(encoder: Encoder, input_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Per-image output shape (without the batch dimension), from one forward pass."""
    with torch.no_grad():
        return tuple(encoder(torch.zeros(1, *input_shape)).shape[1:])


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
