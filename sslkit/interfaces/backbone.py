"""The backbone interface: an image encoder with named stages (timm's ``feature_info`` contract)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor, nn

from ..errors import UnknownNameError
from ..registry import suggest
from .base import Config

# Inside Backbone the name Config is its own class attribute; annotations there that mean the
# base class spell it _Config.
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
