"""The online kNN monitor: how well a stage of the backbone separates labelled classes, measured
during pretraining at the end of every ``monitor.knn.every`` epochs, with no training.

The field's standard health signal (Wu et al., CVPR 2018; stable-pretraining's ``OnlineKNN``,
lightly's ``knn_predict``, solo-learn's kNN): labelled images (``monitor.knn.data``: a dataset
name, labelled folder or store) are split as the probes split them (its test split, else a
seeded carved one with the probes' fraction and seed), the trunk embeds both (eval mode, the
central crop, the run's normalisation), and each test image takes the weighted vote of its ``k``
nearest training images by cosine similarity (:func:`sslkit.knn.knn_votes`). The accuracy goes
to ``metrics.jsonl`` as ``knn_acc``, to every logger and to the progress line.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..config import KnnMonitorConfig, RunConfig
from ..data.augment import Crop, normalize
from ..data.datasets import ImageData, carve_test, take_subset
from ..errors import DataError
from ..interfaces import Backbone
from ..knn import knn_votes, unit
from ..plugins import Plugins
from .precision import autocast


@dataclass
class KnnMonitor:
    """The labelled images (uint8, on the host) and how to read them (see the module docstring)."""

    config: KnnMonitorConfig
    bank: ImageData  # labelled neighbours
    queries: ImageData  # labelled test images
    stage: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop: Crop

    def due(self, epoch: int, epochs: int) -> bool:
        """After epoch ``epoch`` (1-based): every ``every`` epochs and after the last."""
        return epoch % self.config.every == 0 or epoch == epochs

    @torch.no_grad()
    def measure(self, backbone: Backbone, device: torch.device, precision: str, channels_last: bool) -> float:
        """Top-1 accuracy of the weighted kNN vote on the test images (the backbone's mode is kept)."""
        was_training = backbone.training
        backbone.eval()
        try:
            bank = self._embed(backbone, self.bank.images, device, precision, channels_last)
            queries = self._embed(backbone, self.queries.images, device, precision, channels_last)
        finally:
            backbone.train(was_training)
        assert self.bank.labels is not None and self.queries.labels is not None
        c = self.config
        classes = len(self.bank.classes)
        votes = knn_votes(bank, self.bank.labels.to(device), queries, classes, c.k, c.temperature)
        return float((votes.argmax(1).cpu() == self.queries.labels).double().mean())

    def _embed(
        self, backbone: Backbone, images: Tensor, device: torch.device, precision: str, channels_last: bool
    ) -> Tensor:
        """uint8 [N, C, H, W] -> unit features [N, D] of the monitored stage, in batches."""
        out = []
        for start in range(0, images.shape[0], self.config.batch_size):
            x = normalize(
                self.crop.center(images[start : start + self.config.batch_size].to(device), None), self.mean, self.std
            )
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(device, precision):
                f = backbone(x, [self.stage])[self.stage].float()  # [b, C', h, w]
            if self.config.pool == "avg" and f.dim() == 4:
                f = f.mean(dim=(2, 3))
            out.append(unit(f))
        return torch.cat(out)


def build_monitor(config: RunConfig, plugins: Plugins, backbone: Backbone, crop: Crop) -> KnnMonitor | None:
    """The kNN monitor ``monitor.knn`` asks for (None when ``monitor.knn.data`` is unset): the
    labelled data loaded once at the training size, split as the probes split it."""
    from ..data.opener import load_dataset  # the one data opener (RAM), as the probes read data

    c = config.monitor.knn
    if c.data is None:
        return None
    stage = backbone.stage(c.stage).name if c.stage else backbone.last_stage.name  # unknown: one line
    train = load_dataset(c.data, plugins, "train", crop.size)
    if train.labels is None:
        raise DataError(f"monitor.knn.data: {train.description} has no labels; give a folder of class sub-folders")
    try:
        test: ImageData | None = (
            load_dataset(c.data, plugins, "test", crop.size) if c.data in plugins.datasets else None
        )
    except DataError:  # a registered dataset without a test split: carve one, as the probes do
        test = None
    if test is None:
        train, test = carve_test(train, c.test_fraction, config.seed)
        if test is None:
            raise DataError("monitor.knn: the carved test split is empty; raise monitor.knn.test_fraction")
    mean, std = config.data.mean, config.data.std
    assert mean is not None and std is not None  # filled from the training data before this
    bank, queries = take_subset(train, c.bank, config.seed), take_subset(test, c.queries, config.seed)
    return KnnMonitor(c, bank, queries, stage, tuple(mean), tuple(std), crop)
