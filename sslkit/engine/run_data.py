"""The data a run trains on: the pretraining split, the held-out split (pretext accuracy), what they
are (for the checkpoint and a resume's check) and the normalisation measured from them."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..config import RunConfig
from ..data.datasets import carve_test, split_holdout, take_subset
from ..data.opener import open_training_data
from ..data.training import TrainingSource, fingerprint
from ..errors import ConfigError
from ..interfaces import Callback
from ..plugins import Plugins
from .distributed import Placement

log = logging.getLogger(__name__)


@dataclass
class TrainingData:
    """The pretraining split, the held-out split (pretext accuracy), and what they are."""

    train: TrainingSource
    heldout: TrainingSource | None
    description: str
    classes: list[str]
    images: int  # before subset / held-out split: what the fingerprint covers
    fingerprint: str
    channels: int
    stats: tuple[tuple[float, ...], tuple[float, ...]]  # per-channel mean, std of the whole dataset


def load_training_data(
    config: RunConfig, plugins: Plugins, place: Placement, callbacks: Sequence[Callback] = ()
) -> TrainingData:
    """Open the data (rank 0 first: it decodes or packs into the shared cache, the others then
    read that cache instead of all decoding at once), leave out the probes' test split, take
    the subset, hold out the pretext-accuracy split."""

    def progress(done: int, total: int) -> None:
        for cb in callbacks:
            cb.on_data_progress(done, total)

    if place.world_size > 1 and not place.is_main:
        torch.distributed.barrier()
    full = open_training_data(config.data, plugins, progress if place.is_main else None, place.device)
    if place.world_size > 1 and place.is_main:
        torch.distributed.barrier()
    data = full
    if config.data.exclude_test:  # the probes' carved test split: never pretrained on
        data = carve_test(data, config.data.exclude_test, config.seed)[0]
    data = take_subset(data, config.data.subset, config.seed)
    train, heldout = split_holdout(data, config.data.holdout, config.seed)
    return TrainingData(
        train,
        heldout,
        full.description,
        list(full.classes),
        len(full),
        fingerprint(full),
        full.channels,
        full.stats(),
    )


MIN_STD = 1 / 255  # one grey level: a constant channel would otherwise divide by zero


def with_statistics(config: RunConfig, data: TrainingData) -> RunConfig:
    """Fill in data.mean/std from the data (measured once; the checkpoint keeps them). A channel
    that never varies gets the std of one grey level (its normalised values are then 0, not NaN)."""
    mean, std = config.data.mean, config.data.std
    if mean is None or std is None:
        stats = data.stats
        measured = tuple(max(s, MIN_STD) for s in stats[1])
        if measured != tuple(stats[1]):
            log.warning("%s has a constant channel (std 0): normalised with std 1/255 there", data.description)
        update = {"mean": mean or stats[0], "std": std or measured}
        config = config.model_copy(update={"data": config.data.model_copy(update=update)})
    if len(config.data.mean or ()) != data.channels or len(config.data.std or ()) != data.channels:
        raise ConfigError(f"data.mean/std need {data.channels} values, one per image channel")
    return config
