"""The module that gets exported: a backbone cut at one stage, then pooled to an embedding.

Also picks the default stage: the one the run's probes found best (``RUN/probe.json``'s
``best_layer``), else the deepest.
"""

from __future__ import annotations

import json
import logging

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import CheckpointError, ConfigError
from ..interfaces import Backbone
from ..run import Run, load_run

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


# A run is loaded in one place, sslkit.run; re-exported here for the export code and its callers.
__all__ = ["Encoder", "Run", "default_layer", "load_run", "output_shape"]


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
