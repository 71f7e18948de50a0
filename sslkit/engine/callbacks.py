"""What a registered callback is built with (:class:`RunContext`); the :class:`Callback` interface
itself is in :mod:`sslkit.interfaces`, with every other extension interface."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config import RunConfig
    from ..plugins import Plugins


@dataclass(frozen=True)
class RunContext:
    """What a registered callback is built with: the validated config, the run folder and the plugins."""

    config: RunConfig
    out_dir: Path
    plugins: Plugins
