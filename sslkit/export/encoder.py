"""The module that gets exported: a backbone cut at one stage, then pooled to an embedding.

Also rebuilds a run's backbone from its checkpoint, and picks the default stage: the one the
run's probes found best (``RUN/probe.json``'s ``best_layer``), else the deepest.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..engine.checkpoint import load_checkpoint, resolve_checkpoint
from ..errors import CheckpointError, ConfigError
from ..interfaces import Backbone
from ..plugins import Plugins, load_plugins

log = logging.getLogger(__name__)

POOLS = ("avg", "flatten", "none")
PROBE_RESULTS = "probe.json"


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
        self.half = half

    def forward(self, images: Tensor) -> Tensor:
        x = images.half() if self.half else images
        f = self.backbone(x, [self.layer])[self.layer]
        if self.pool == "avg":
            f = F.adaptive_avg_pool2d(f, 1).flatten(1)
        elif self.pool == "flatten":
            f = f.flatten(1)
        return f.float() if self.half else f


@dataclass
class Run:
    """What an export needs from a run: its eval-mode backbone and the facts a consumer needs."""

    backbone: Backbone
    config: dict[str, Any]
    input_shape: tuple[int, int, int]  # (C, H, W) of the training images
    mean: tuple[float, ...]
    std: tuple[float, ...]
    task: str
    epoch: int
    path: Path  # the checkpoint file
    run_dir: Path | None  # the run folder, when one was given


def load_run(run: str | Path, plugins: Plugins | None = None) -> Run:
    """A run folder (or checkpoint file) -> its backbone with the trained weights, in eval mode."""
    plugins = plugins or load_plugins()
    path = resolve_checkpoint(run)
    state = load_checkpoint(path)
    config = state["config"]
    options = {k: v for k, v in config["backbone"].items() if k != "name"}
    from ..factory import create_backbone

    backbone = create_backbone(config["backbone"]["name"], plugins, **options)
    try:
        backbone.load_state_dict(state["backbone"], strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(
            f"'{path}': backbone weights do not fit backbone '{config['backbone']['name']}' ({first}); "
            "was the backbone plugin changed since training?"
        ) from None
    data = config["data"]
    shape = tuple(int(s) for s in state["data"]["shape"])
    if data.get("mean") is None or data.get("std") is None:
        raise CheckpointError(f"'{path}': the run's config has no data.mean/std; re-train with a current sslkit")
    return Run(
        backbone=backbone.eval(), config=config, input_shape=shape,  # type: ignore[arg-type]
        mean=tuple(data["mean"]), std=tuple(data["std"]), task=config["task"]["name"],
        epoch=int(state.get("epoch", 0)), path=path, run_dir=Path(run) if Path(run).is_dir() else None,
    )


def default_layer(run: Run) -> str:
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
