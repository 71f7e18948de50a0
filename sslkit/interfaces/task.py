"""The pretext-task interface: a task owns its batch transform, its head and its loss.

A classification task (rotation, context, jigsaw) implements :meth:`PretextTask.prepare` and
:meth:`PretextTask.forward` and gets one crop + flip per image, normalised, cross-entropy and
accuracy. Today's methods (SimCLR, BYOL, DINO) use the rest: :meth:`~PretextTask.views` (several
views per image, with photometric transforms, drawn by the engine), :meth:`~PretextTask.setup`
(the run's length, world size and normalisation), :meth:`~PretextTask.after_step` (EMA targets
and schedules, after every optimiser step), a :class:`Loss` with named metrics, and modules
whose parameters have ``requires_grad=False`` (EMA targets: no optimiser, no gradient sync).
"What the engine does with your task" in the docs lists every step in order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import PluginError
from .backbone import Backbone
from .base import Config
from .views import View

_Config = Config


@dataclass(frozen=True)
class RunInfo:
    """What a task is told once, before the first step (:meth:`PretextTask.setup`)."""

    epochs: int
    steps_per_epoch: int  # optimiser steps per epoch (every process takes the same number)
    total_steps: int  # epochs * steps_per_epoch: the length of momentum and temperature schedules
    world_size: int  # processes; the batch a process sees is global_batch // world_size
    global_batch: int  # images per step over all processes
    image_size: int  # the training size (views may be smaller)
    mean: tuple[float, ...]  # the run's normalisation, per channel, in [0, 1]
    std: tuple[float, ...]
    device: str = "cpu"
    _stats: dict[tuple[str, torch.dtype], tuple[Tensor, Tensor]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def normalize(self, images: Tensor) -> Tensor:
        """Pixels in [0, 1], shape `[B, C, H, W]` -> normalised with the run's mean/std (for tasks that
        ask for raw pixels and transform them first)."""
        key = (str(images.device), images.dtype)
        if key not in self._stats:  # built once per device: no host-to-device copy per step
            mean = torch.tensor(self.mean, dtype=images.dtype).view(1, -1, 1, 1).to(images.device)
            std = torch.tensor(self.std, dtype=images.dtype).view(1, -1, 1, 1).to(images.device)
            self._stats[key] = (mean, std)
        mean, std = self._stats[key]
        return (images - mean) / std


@dataclass(frozen=True)
class StepInfo:
    """Where training stands after an optimiser step (:meth:`PretextTask.after_step`)."""

    global_step: int  # optimiser steps taken so far, this one included (1 after the first)
    epoch: int  # the epoch this step belongs to (0-based)
    step: int  # the step within that epoch (0-based)
    steps_per_epoch: int
    total_steps: int
    world_size: int
    global_batch: int

    @property
    def progress(self) -> float:
        """Fraction of training done before this step, in [0, 1): k / K with k the 0-based index
        of the step just taken (BYOL's momentum schedule, Grill et al. 2020, sec. 3.2)."""
        return (self.global_step - 1) / max(1, self.total_steps)


@dataclass
class Loss:
    """What :meth:`PretextTask.loss` may return instead of a bare scalar: the value to minimise and
    named metrics (0-dim tensors: loss parts, embedding std, contrastive accuracy ...), averaged
    per epoch into ``metrics.jsonl`` (``train_<name>``, ``heldout_<name>``), the loggers and the
    progress line. A metric named ``acc`` is the task's accuracy; one named ``<part>/<name>``
    (a mix's ``rotation/loss``) becomes ``<part>/train_<name>`` and ``<part>/heldout_<name>``."""

    value: Tensor
    metrics: dict[str, Tensor] = field(default_factory=dict)


class PretextTask(nn.Module):
    """A self-supervised task: its batch transform, its head and its loss.

    The engine hands :meth:`prepare` a batch already on the device: one augmented (crop + flip),
    normalised image per sample, or, when the task declares :meth:`views`, a list of views. The
    task returns the network inputs and the pretext targets (generated in batch, on the device,
    from ``generator``). :meth:`forward` drives the backbone (once, once per patch or once per
    view) and the task's own modules. Tasks never read files.

    ``presets`` maps a preset name to overrides of the run config (epochs, schedule, optimizer),
    so ``--preset paper`` reproduces a paper's recipe; ``default_preset`` is used when none is
    given. ``raw_pixels``: :meth:`prepare` gets pixels in [0, 1] instead of normalised ones (the
    task normalises with ``self.run_info.normalize`` after its own pixel-space transforms).
    """

    Config: ClassVar[type[_Config]] = _Config
    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    default_preset: ClassVar[str | None] = None
    raw_pixels: ClassVar[bool] = False

    def __init__(self, config: _Config, backbone: Backbone) -> None:
        super().__init__()
        self.config = config
        self.run_info: RunInfo | None = None

    def parts(self) -> Mapping[str, PretextTask] | None:
        """The tasks this task is made of, by name (a mix such as ``rotation+context``), or None
        (the default). The engine then feeds each part as it would feed that task alone: its own
        crop or views, raw or normalised, drawn from its own copy of the step's generator
        (:func:`copy_generator`), and :meth:`prepare` receives ``{name: that part's input}``."""
        return None

    def views(self) -> Sequence[View] | None:
        """The view groups the engine draws per image, in order (``[View(count=2, jitter=0.8)]``
        for two SimCLR views; a second group of smaller views for multi-crop), or None (the
        default) for one crop + flip per image as ``data.crop`` says."""
        return None

    def setup(self, run: RunInfo) -> None:
        """Called once before the first training step (and before a resumed run continues); the
        default keeps ``run`` as ``self.run_info``."""
        self.run_info = run

    def prepare(
        self, images: Tensor | list[Tensor] | Mapping[str, Any], generator: torch.Generator
    ) -> tuple[Any, Tensor | None]:
        """images [B, C, H, W] float (or the list of views [B, C, s, s], groups and views in
        :meth:`views`'s order; or ``{part: its input}`` for a task made of :meth:`parts`) ->
        (inputs, targets [M] int64, or None when the loss needs none)."""
        raise NotImplementedError

    def forward(self, backbone: Backbone, inputs: Any) -> Any:
        """inputs -> logits [M, num_classes] (classification tasks) or whatever :meth:`loss` takes."""
        raise NotImplementedError

    def loss(self, outputs: Any, targets: Tensor | None) -> Tensor | Loss:
        """The scalar to minimise, or a :class:`Loss` with named metrics. Default: cross-entropy."""
        if targets is None:
            raise NotImplementedError(f"{type(self).__name__}.loss: override it for a task without targets")
        return F.cross_entropy(outputs, targets)

    def correct(self, outputs: Any, targets: Tensor | None) -> Tensor | None:
        """Number of correct predictions (a 0-dim tensor) for pretext accuracy, or None (no accuracy)."""
        if targets is None or not isinstance(outputs, Tensor) or outputs.dim() != 2:
            return None
        return (outputs.argmax(dim=1) == targets).sum()

    def after_step(self, backbone: Backbone, step: StepInfo) -> None:
        """Called after every optimiser step that updated the weights (never by evaluation,
        precise BatchNorm or a resume), with the online ``backbone``: EMA targets, momentum and
        temperature schedules. State kept here must live in buffers or modules, so checkpoints
        carry it."""

    def preview(self, inputs: Any, targets: Tensor | None) -> list[tuple[list[Tensor], str]]:
        """What the network sees, for ``sslkit show-batch``: one ``([image [C, H, W], ...],
        caption)`` per sample of :meth:`prepare`'s output, images shown side by side.

        The default handles a plain tensor of inputs [M, C, H, W] (one image per sample,
        captioned with its label) and a list of views of one batch (each image's views side by
        side); tasks with other inputs (pairs, tuples) override it.
        """
        if isinstance(inputs, list) and inputs and all(isinstance(v, Tensor) and v.dim() == 4 for v in inputs):
            n = inputs[0].shape[0]
            return [([v[i] for v in inputs], f"{len(inputs)} views") for i in range(n)]
        if not isinstance(inputs, Tensor) or inputs.dim() != 4:
            raise NotImplementedError(
                f"{type(self).__name__}.preview: override it for inputs that are not [M, C, H, W]"
            )
        if targets is None:
            return [([inputs[i]], f"sample {i}") for i in range(inputs.shape[0])]
        return [([inputs[i]], f"label {int(targets[i])}") for i in range(inputs.shape[0])]


def copy_generator(generator: torch.Generator) -> torch.Generator:
    """A generator on the same device in the same state: the draws of the parts of a mix
    (:meth:`PretextTask.parts`) are each the draws that part would make alone."""
    copy = torch.Generator(device=generator.device)
    copy.set_state(generator.get_state())
    return copy


def as_loss(value: Tensor | Loss, task: str) -> Loss:
    """A task's :meth:`~PretextTask.loss` result as a :class:`Loss`, or a one-line error naming
    what it returned instead."""
    if isinstance(value, Loss):
        loss = value
    elif isinstance(value, Tensor):
        loss = Loss(value)
    else:
        raise PluginError(
            f"task '{task}': loss() returned {type(value).__name__}, not a scalar tensor or sslkit.Loss; "
            "return the value to minimise"
        )
    if not isinstance(loss.value, Tensor) or loss.value.dim() != 0:
        shape = tuple(loss.value.shape) if isinstance(loss.value, Tensor) else type(loss.value).__name__
        raise PluginError(f"task '{task}': loss() must be a scalar (0-dim) tensor, got {shape}")
    bad = [k for k, v in loss.metrics.items() if not (isinstance(v, Tensor) and v.dim() == 0) or not k]
    if bad:
        raise PluginError(f"task '{task}': metric {bad[0]!r} must be a named 0-dim tensor")
    return loss
