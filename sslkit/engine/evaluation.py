"""What the loop measures without training: held-out pretext loss, accuracy and metrics, and
BatchNorm statistics recomputed from the current weights early in a run (precise BN). Neither
ever calls the task's ``after_step``: evaluation changes no task state."""

from __future__ import annotations

import torch

from ..config import RunConfig
from ..data.training import TrainingSource, iterate_batches
from ..distributed import alone
from .distributed import Placement
from .inputs import InputPipeline
from .metrics import EpochMeter, phase_key
from .model import PretextModel
from .precise_bn import precise_batches, recompute_batchnorm
from .precision import autocast
from .seeds import EVAL, EVAL_VIEWS, PRECISE_BN, PRECISE_BN_VIEWS, generator
from .step import channels_last, forward_loss


@torch.no_grad()
def evaluate(
    model: PretextModel,
    heldout: TrainingSource,
    pipeline: InputPipeline,
    config: RunConfig,
    device: torch.device,
    memory_format: bool,
) -> dict[str, float]:
    """Pretext loss, accuracy and the task's metrics on held-out images (the central crop or
    views from a fixed generator, fixed pretext draws), as ``heldout_<name>``."""
    with alone():  # the main process evaluates while the others wait: a task's collectives stay local
        return _evaluate(model, heldout, pipeline, config, device, memory_format)


def _evaluate(
    model: PretextModel,
    heldout: TrainingSource,
    pipeline: InputPipeline,
    config: RunConfig,
    device: torch.device,
    memory_format: bool,
) -> dict[str, float]:
    was_training = model.training
    model.eval()
    pretext, views = generator(device, config.seed, EVAL), generator(device, config.seed, EVAL_VIEWS)
    b = config.data.batch_size
    batches = [torch.arange(s, min(s + b, len(heldout))) for s in range(0, len(heldout), b)]
    meter = EpochMeter(device)
    for batch in iterate_batches(heldout, batches, device, config.data.workers, config.data.decode):
        inputs, targets = model.task.prepare(pipeline.eval(batch, views), pretext)
        meter.add(
            forward_loss(
                model.task,
                model,
                inputs,
                targets,
                device=device,
                precision=config.precision,
                memory_format=memory_format,
                images=batch.images.shape[0],
                name=str(config.task["name"]),
            )
        )
    model.train(was_training)
    return {phase_key("heldout", k): v for k, v in meter.running().items()}


def precise_batchnorm(
    model: PretextModel,
    source: TrainingSource,
    pipeline: InputPipeline,
    config: RunConfig,
    place: Placement,
    memory_format: bool,
) -> int:
    """Recompute BatchNorm statistics from this process's share of the first training batches,
    with the evaluation crop (or fixed views) and fixed pretext draws (see
    :mod:`sslkit.engine.precise_bn`)."""
    device, b = place.device, config.data.batch_size
    local = b // place.world_size
    n = precise_batches(b, len(source) // b)
    shares = [
        torch.arange(s * b + place.rank * local, s * b + (place.rank + 1) * local) % len(source) for s in range(n)
    ]
    pretext = generator(device, config.seed, PRECISE_BN, place.rank)

    def inputs():
        batches = iterate_batches(source, shares, device, config.data.workers, config.data.decode)
        for s, batch in enumerate(batches):
            views = generator(device, config.seed, PRECISE_BN_VIEWS, s)  # drawn from by tasks with views only
            yield model.task.prepare(pipeline.fixed(batch, views, b, place.rank * local), pretext)[0]

    def forward(inputs):
        with autocast(device, config.precision):
            return model(channels_last(inputs, memory_format))

    return recompute_batchnorm(model, inputs(), forward)
