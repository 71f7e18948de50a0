"""The pretext-task interface: a task owns its batch transform, its head and its loss."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .backbone import Backbone
from .base import Config

_Config = Config


class PretextTask(nn.Module):
    """A self-supervised task: its batch transform, its head and its loss.

    The engine hands :meth:`prepare` a batch of augmented, normalised images already on the
    device; the task returns the network inputs and the pretext targets (generated in batch, on
    the device, from ``generator``). :meth:`forward` drives the backbone (once, or once per
    patch for siamese tasks) and the head. Tasks never read files.

    ``presets`` maps a preset name to overrides of the run config (epochs, schedule, optimizer),
    so ``--preset paper`` reproduces a paper's recipe; ``default_preset`` is used when none is
    given.
    """

    Config: ClassVar[type[_Config]] = _Config
    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    default_preset: ClassVar[str | None] = None

    def __init__(self, config: _Config, backbone: Backbone) -> None:
        super().__init__()
        self.config = config

    def prepare(self, images: Tensor, generator: torch.Generator) -> tuple[Any, Tensor]:
        """images [B, C, H, W] float -> (inputs, targets [M] int64)."""
        raise NotImplementedError

    def forward(self, backbone: Backbone, inputs: Any) -> Tensor:
        """inputs -> logits [M, num_classes]."""
        raise NotImplementedError

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        return F.cross_entropy(logits, targets)

    def correct(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Number of correct predictions (a 0-dim tensor), for pretext accuracy."""
        return (logits.argmax(dim=1) == targets).sum()

    def preview(self, inputs: Any, targets: Tensor) -> list[tuple[list[Tensor], str]]:
        """What the network sees, for ``sslkit show-batch``: one ``([image [C, H, W], ...],
        caption)`` per sample of :meth:`prepare`'s output, images shown side by side.

        The default handles a plain tensor of inputs [M, C, H, W] (one image per sample,
        captioned with its label); tasks with other inputs (pairs, tuples) override it.
        """
        if not isinstance(inputs, Tensor) or inputs.dim() != 4:
            raise NotImplementedError(
                f"{type(self).__name__}.preview: override it for inputs that are not [M, C, H, W]"
            )
        return [([inputs[i]], f"label {int(targets[i])}") for i in range(inputs.shape[0])]
