"""THE run loader: a run folder (or its checkpoint.pt) -> :class:`LoadedRun`, the trained backbone
and the facts needed to use it. The CLI, probes, export, viz and the Python API all load runs here
(``sslkit.load`` returns the API's :class:`sslkit.api.Run`, a LoadedRun that also exports and probes).

Also what is cut out of a run to use it: the :class:`Encoder` (the backbone up to one stage, then
pooled) and the default stage to cut at (:func:`default_layer`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
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

    def _repr_html_(self) -> str:
        """A notebook's view of the run: what it is and its last epoch's metrics, as a small table."""
        from html import escape

        rows = {
            "run": str(self.folder),
            "task": self.task,
            "backbone": self.backbone_name,
            "epochs": f"{self.epoch} of {self.config.get('epochs', '?')}",
            "input": " x ".join(map(str, self.input_shape)),
        }
        last = self.history[-1] if self.history else {}
        rows |= {k: f"{v:.4g}" for k, v in last.items() if isinstance(v, float) and k != "seconds"}
        cells = "".join(
            f"<tr><th style='text-align:left'>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows.items()
        )
        return f"<table>{cells}</table>"

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
        with_names: bool = False,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> Any:
        """Features of ``images`` at stage ``layer`` (default: RUN/probe.json's best layer, else the last).

        ``images``: paths or folders (decoded, resized and centre-cropped to the training size;
        unreadable files skipped with a warning naming them, as ``sslkit embed`` does), a packed
        store, PIL images, or a tensor [N, C, H, W] / [C, H, W] that is uint8 (0..255) or float
        (0..1). They are normalised with the run's mean/std, exactly as in training. Returns
        float32 [N, C] (``avg``), [N, C*H*W] (``flatten``) or [N, C, H, W] (``none``) on the CPU;
        with ``with_names``, ``(features, names)``: the file (or item) of every row.
        ``on_progress(done, total)`` after every batch.
        """
        from .data.augment import normalize

        x, names = read_images(images, self.input_shape)
        encoder = Encoder(self.backbone, layer or default_layer(self), pool).to(device).eval()
        parts = []
        for i in range(0, x.shape[0], batch_size):
            parts.append(encoder(normalize(x[i : i + batch_size].to(device), self.mean, self.std)).cpu())
            if on_progress is not None:
                on_progress(min(i + batch_size, x.shape[0]), x.shape[0])
        features = torch.cat(parts)
        return (features, names) if with_names else features


def _warn_if_unfinished(path: Path, state: dict[str, Any]) -> None:
    """Say so when a run's checkpoint is not its last: probes and exports of a run that is still
    training (or was interrupted) read an intermediate state, and should not do it silently."""
    done, planned = int(state.get("epoch", 0)), int(state["config"].get("epochs", 0))
    step = int(state.get("step", 0))
    if done < planned:
        where = f"{done} of {planned} epochs" + (f" and {step} steps" if step else "")
        log.warning(
            "%s holds an unfinished run (%s: still training, or interrupted); using its latest checkpoint",
            path,
            where,
        )


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
    _warn_if_unfinished(path, state)
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
    return read_images(images, shape)[0]


def read_images(images: ImageInput, shape: Sequence[int]) -> tuple[Tensor, list[str]]:
    """Anything image-like -> ([N, C, H, W] in 0..255, one name per row). Files that cannot be
    read are skipped with one warning naming them, as ``sslkit embed`` does; a packed store is
    read whole (its damage is a one-line error, never a skipped image)."""
    if isinstance(images, Tensor):
        x = images if images.dim() == 4 else images.unsqueeze(0)
        if x.dim() != 4 or x.shape[1] != shape[0]:
            raise DataError(
                f"image tensor of shape {list(images.shape)}: expected [N, {shape[0]}, H, W] or [{shape[0]}, H, W]"
            )
        rows = [f"tensor[{i}]" for i in range(x.shape[0])]
        return (x if x.dtype == torch.uint8 else x.float() * 255.0), rows  # floats are 0..1 (ToTensor)
    from PIL import Image

    items = [images] if isinstance(images, (str, Path, Image.Image)) else list(images)
    parts: list[Tensor] = []
    names: list[str] = []
    skipped: list[str] = []
    for k, item in enumerate(items):
        read, got, bad = _read_item(item, shape, k)
        parts += [read] if read is not None else []
        names += got
        skipped += bad
    if skipped:
        shown = ", ".join(skipped[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
        log.warning("skipped %d unreadable image(s): %s", len(skipped), shown)
    if not parts:
        raise DataError("no readable images given: pass image files, folders, a packed store, PIL images or a tensor")
    return torch.cat(parts), names


def _read_item(item: Any, shape: Sequence[int], k: int) -> tuple[Tensor | None, list[str], list[str]]:
    """One input of :func:`read_images` -> (its images or None, their names, unreadable files)."""
    import numpy as np
    from PIL import Image

    from .deploy import fit
    from .files import list_images

    if isinstance(item, Image.Image):
        return torch.from_numpy(fit(item, shape)[None]), [f"image[{k}]"], []
    if Path(item).is_dir() and (Path(item) / "manifest.json").is_file():  # a packed store
        from .data.store import Store

        store = Store.open(Path(item))
        data = store.to_memory(int(shape[1]) if store.uniform_size != tuple(shape[1:]) else None)
        return data.images, [str(Path(item) / f) for f in data.files] or [f"{item}[{i}]" for i in range(len(data))], []
    try:
        files = list_images([item])
    except (FileNotFoundError, LookupError) as exc:
        raise DataError(f"{exc}; give image files, folders, a packed store, PIL images or a tensor") from None
    arrays, names, bad = [], [], []
    for p in files:
        try:
            with Image.open(p) as im:
                arrays.append(fit(im, shape))
            names.append(str(p))
        except (OSError, ValueError):  # unreadable or not an image: skipped, as sslkit embed does
            bad.append(str(p))
    return (torch.from_numpy(np.stack(arrays)) if arrays else None), names, bad
