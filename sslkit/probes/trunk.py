"""The trunk a probe reads: a run's trained backbone, a random init of its architecture, or a
fresh backbone (the supervised baseline), with the normalisation it expects."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import RunConfig
from ..errors import ConfigError
from ..factory import build_backbone
from ..interfaces import Backbone
from ..plugins import Plugins
from ..run import LoadedRun, describe, load_run


@dataclass
class Trunk:
    backbone: Backbone
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    description: str
    run_config: dict[str, Any] | None
    image_size: int | None = None

    @property
    def data(self) -> str | None:
        """The dataset the trunk's run trained on (the probes' default data)."""
        return (self.run_config or {}).get("data", {}).get("name")


def load_trunk(
    run: str | Path | LoadedRun | None,
    plugins: Plugins,
    *,
    random_init: bool = False,
    backbone: str | None = None,
    backbone_options: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> Trunk:
    """The trunk of a run (its trained weights, or a fresh init of its architecture with
    ``random_init``), or with no run a freshly initialised ``backbone``."""
    loaded = load_run(run, plugins) if run is not None else None
    run_config = RunConfig.model_validate(loaded.config).model_dump(mode="json") if loaded else None
    if backbone is not None:
        spec = {"name": backbone, **(backbone_options or {})}
    elif run_config is not None:
        spec = {**run_config["backbone"], **(backbone_options or {})}
    else:
        raise ConfigError("no trunk: give a run folder, or --random-init with --backbone NAME")
    if loaded is not None and not random_init and spec != run_config["backbone"]:  # type: ignore[index]
        raise ConfigError("--backbone/--set backbone.* change a trained run's architecture; add --random-init")
    if loaded is not None and not random_init:
        model, what = loaded.backbone, describe(loaded)
    else:
        torch.manual_seed(seed)
        model = build_backbone(spec, plugins)
        what = (
            f"random init of the run's {spec['name']} (seed {seed})"
            if loaded
            else f"random init: {spec['name']} (seed {seed})"
        )
    data_cfg = (run_config or {}).get("data", {})
    return Trunk(
        model, _tuple(data_cfg.get("mean")), _tuple(data_cfg.get("std")), what, run_config, data_cfg.get("image_size")
    )


def _tuple(v: Any) -> tuple[float, ...] | None:
    return None if v is None else tuple(v)
