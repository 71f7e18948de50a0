"""The three interfaces a plugin implements: :class:`PretextTask`, :class:`Backbone`, :class:`Probe`.

Each carries a nested pydantic ``Config`` (``extra="forbid"``) whose fields are the options a
user can set (``--set backbone.width=0.5``); the class is built from a validated instance of it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict
from torch import Tensor, nn

from .errors import UnknownNameError
from .registry import suggest


class Config(BaseModel):
    """Base of every plugin config: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# Inside Backbone and PretextTask the name Config is their own class attribute; annotations there
# that mean this base class spell it _Config.
_Config = Config


@dataclass(frozen=True)
class Stage:
    """One named output of a backbone: ``channels`` maps at ``1/stride`` of the input size."""

    name: str
    channels: int
    stride: int


class Backbone(nn.Module):
    """An image encoder with named stages.

    Subclasses set ``self.stages`` (shallow to deep) and put one module per stage, in order, into
    ``self.blocks`` (an ``nn.ModuleDict`` keyed by stage name); the default :meth:`forward` runs
    them in sequence and stops at the deepest stage asked for. Override :meth:`forward` for
    encoders that are not a chain.
    """

    Config: ClassVar[type[_Config]] = _Config

    def __init__(self, config: _Config) -> None:
        super().__init__()
        self.config = config
        self.stages: tuple[Stage, ...] = ()
        self.blocks = nn.ModuleDict()

    @property
    def stage_names(self) -> list[str]:
        return [s.name for s in self.stages]

    @property
    def last_stage(self) -> Stage:
        return self.stages[-1]

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        names = self.stage_names
        raise UnknownNameError(
            f"unknown stage '{name}'{suggest(name, names)} of {type(self).__name__}; stages: {', '.join(names)}"
        )

    def forward(self, x: Tensor, stages: Sequence[str] | None = None) -> dict[str, Tensor]:
        """Return ``{stage name: feature map}`` for ``stages`` (default: the last stage)."""
        wanted = [self.stage(n).name for n in (stages or [self.last_stage.name])]
        deepest = max(self.stage_names.index(n) for n in wanted)
        out: dict[str, Tensor] = {}
        for i, (name, block) in enumerate(self.blocks.items()):
            x = block(x)
            if name in wanted:
                out[name] = x
            if i == deepest:
                break
        return out


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


class ProbeConfig(Config):
    """Training recipe every probe has; each probe's defaults are its paper's."""

    epochs: int = 100
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    milestones: tuple[int, ...] = (20, 40, 45)
    gamma: float = 0.2
    # --finetune: the trunk trains too, at lr * finetune_lr_scale (the paper publishes no value).
    finetune_lr_scale: float = 0.1


class Probe(nn.Module):
    """A classifier trained on one frozen (or fine-tuned) stage of a backbone.

    Built from its config, the shape of one sample's features ``(C, H, W)`` and the number of
    classes; :meth:`forward` maps features [B, C, H, W] to logits [B, num_classes].
    """

    Config: ClassVar[type[ProbeConfig]] = ProbeConfig

    def __init__(self, config: ProbeConfig, feature_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        self.config = config
        self.feature_shape = tuple(feature_shape)
        self.num_classes = num_classes

    def forward(self, features: Tensor) -> Tensor:
        raise NotImplementedError
