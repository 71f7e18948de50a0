"""What the task is fed: a loaded batch of uint8 images -> the task's ``prepare`` input.

    tasks without views:  crop + flip (``data.crop``) -> [b, C, S, S] -> normalise
    tasks with views:     every declared view (:mod:`sslkit.data.views`) -> [b, C, s, s] each -> normalise
    ``raw_pixels`` tasks: the same, in [0, 1] instead of normalised (the task normalises later)

    tasks made of parts:  each part as above, as it would be alone, from its own copy of the
                          step's generator (a mix such as rotation+context) -> {part: its input}

One pipeline serves training (random draws for the global batch, this process's rows),
evaluation (the central crop, or views from a fixed generator) and ``show-batch``, so what the
picture shows is what the loop trains on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..config import RunConfig
from ..data.augment import Crop, normalize, standardize
from ..data.batches import Batch
from ..data.training import TrainingSource
from ..data.views import check_views, draw_views
from ..errors import ConfigError
from ..interfaces import PretextTask, View, copy_generator

TaskInput = Tensor | list[Tensor] | dict[str, Any]
Draw = Callable[["InputPipeline", torch.Generator], TaskInput]


@dataclass(frozen=True)
class InputPipeline:
    crop: Crop  # the single crop (tasks without views); its size is the training size
    views: tuple[View, ...] | None  # the task's view groups, or None
    mean: tuple[float, ...]
    std: tuple[float, ...]
    raw: bool = False  # the task's raw_pixels: [0, 1] pixels, not normalised
    parts: tuple[tuple[str, InputPipeline], ...] = ()  # a task made of parts: each part's own pipeline

    @property
    def size(self) -> int:
        return self.crop.size

    @property
    def has_views(self) -> bool:
        return self.views is not None or any(p.has_views for _, p in self.parts)

    def train(self, batch: Batch, generator: torch.Generator, total: int | None = None, offset: int = 0) -> TaskInput:
        """Random crop or views of this process's rows of a global batch of ``total`` images."""
        if self.parts:
            return self._each(lambda p, g: p.train(batch, g, total, offset), generator)
        if self.views is None:
            return self._finish(self.crop(batch.images, batch.sizes, generator, total, offset))  # [b, C, S, S]
        views = draw_views(batch.images, batch.sizes, self.views, self.size, generator, total, offset)
        return [v if self.raw else standardize(v, self.mean, self.std) for v in views]

    def eval(self, batch: Batch, generator: torch.Generator) -> TaskInput:
        """The central crop (tasks without views), or views drawn from ``generator`` (a fixed one:
        every evaluation sees the same views)."""
        if self.parts:
            return self._each(lambda p, g: p.eval(batch, g), generator)
        if self.views is None:
            return self._finish(self.crop.center(batch.images, batch.sizes))
        return self.train(batch, generator)

    def fixed(self, batch: Batch, generator: torch.Generator, total: int, offset: int) -> TaskInput:
        """Precise BatchNorm's input: the central crop, or views of the global batch from
        ``generator`` (this process's rows: N processes see the views one process would)."""
        if self.parts:
            return self._each(lambda p, g: p.fixed(batch, g, total, offset), generator)
        if self.views is None:
            return self._finish(self.crop.center(batch.images, batch.sizes))
        return self.train(batch, generator, total, offset)

    def _each(self, draw: Draw, generator: torch.Generator) -> dict[str, TaskInput]:
        """Every part's input, each drawn from its own copy of ``generator`` (so each is what the
        part alone would get); parts fed alike share one draw. The generator then goes on from
        where the first part left it."""
        drawn: list[tuple[InputPipeline, TaskInput]] = []
        out: dict[str, TaskInput] = {}
        after = None
        for name, part in self.parts:
            same = [x for p, x in drawn if p == part]
            if not same:
                g = copy_generator(generator)
                same = [draw(part, g)]
                drawn.append((part, same[0]))
                after = g.get_state() if after is None else after
            out[name] = same[0]
        if after is not None:
            generator.set_state(after)
        return out

    def _finish(self, x: Tensor) -> Tensor:
        """0..255 [b, C, S, S] -> normalised float (or [0, 1] for raw-pixel tasks)."""
        return x.float() / 255.0 if self.raw else normalize(x, self.mean, self.std)


def make_crop(config: RunConfig, source: TrainingSource, description: str | None = None) -> Crop:
    """The crop ``data.crop`` asks for, at ``data.image_size`` (default: the images' own size)."""
    d = config.data
    native = source.uniform_size
    size = d.image_size or (native[0] if native and native[0] == native[1] else None)
    if size is None:
        raise ConfigError(
            f"the images of {description or source.description} differ in size (or are not square); "
            "set the training size with --set data.image_size=N"
        )
    mode = d.crop
    if mode == "auto":
        mode = "pad_crop" if native == (size, size) else "random_resized"
    if mode == "pad_crop" and native != (size, size):
        raise ConfigError(
            f"data.crop=pad_crop needs images of the training size {size}x{size}; "
            "use data.crop=random_resized or center for images of other sizes"
        )
    return Crop(mode, size, d.crop_padding, d.crop_scale, d.crop_ratio, d.flip)


def make_pipeline(config: RunConfig, crop: Crop, task: PretextTask, channels: int) -> InputPipeline:
    """The pipeline a task asks for (its views, checked against the data; or one per part of a
    task made of parts), with the run's normalisation (``data.mean``/``std``, filled in from the
    data before training)."""
    mean, std = config.data.mean, config.data.std
    if mean is None or std is None:
        raise RuntimeError("data.mean/std must be filled in before the input pipeline is built")
    parts = task.parts()
    if parts:
        own = tuple((n, _pipeline(crop, t, n, channels, mean, std)) for n, t in parts.items())
        return InputPipeline(crop, None, tuple(mean), tuple(std), parts=own)
    return _pipeline(crop, task, str(config.task["name"]), channels, mean, std)


def _pipeline(
    crop: Crop, task: PretextTask, name: str, channels: int, mean: Sequence[float], std: Sequence[float]
) -> InputPipeline:
    declared: Sequence[View] | None = task.views()
    views = None
    if declared is not None:
        views = tuple(declared)
        if not views or not all(isinstance(v, View) for v in views):
            raise ConfigError(f"task '{name}': views() must return a non-empty list of sslkit.View")
        check_views(views, crop.size, channels, name)
    return InputPipeline(crop, views, tuple(mean), tuple(std), bool(task.raw_pixels))
