"""``--logger tensorboard``: event files in RUN/tensorboard (``tensorboard --logdir runs``).

Scalars ``step/{loss,acc,images_per_s}`` against the global step and ``epoch/<key>`` for every
number of the epoch record; the run config in the HParams tab (with the final held-out accuracy
as its metric); the ``show-batch`` picture once and the training curves after every epoch.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..engine.callbacks import RunContext
from ..viz.batch import batch_picture
from ..viz.pictures import curves_figure
from . import StepCounter, flat_config, need

log = logging.getLogger(__name__)


class TensorBoardLogger(StepCounter):
    def __init__(self, context: RunContext) -> None:
        super().__init__(context)
        need("tensorboard", "tensorboard")  # torch's SummaryWriter writes through it
        from torch.utils.tensorboard import SummaryWriter

        self.folder = Path(context.out_dir) / "tensorboard"
        self.writer = SummaryWriter(log_dir=str(self.folder))

    def on_start(self, info: dict[str, Any]) -> None:
        super().on_start(info)
        from torch.utils.tensorboard.summary import hparams

        params = flat_config(self.context.config.model_dump(mode="json"))
        metrics = {"epoch/heldout_acc": 0.0, "epoch/train_loss": 0.0}
        for summary in hparams(params, metrics):  # the HParams tab, in this run's own event file
            # SummaryWriter's own add_* methods reach the file writer this way (file_writer is typed None).
            self.writer._get_file_writer().add_summary(summary)
        try:
            picture = batch_picture(self.context.config, self.context.plugins)
            self.writer.add_image("show-batch", np.asarray(picture), 0, dataformats="HWC")
        except Exception as exc:  # a picture must never stop training; say why it is missing
            log.warning("tensorboard: no show-batch picture (%s: %s)", type(exc).__name__, exc)

    def on_step(self, epoch: int, step: int, steps: int, metrics: dict[str, float]) -> None:
        at = self.global_step(epoch, step)
        for key, value in metrics.items():
            self.writer.add_scalar(f"step/{key}", value, at)

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        super().on_epoch_end(record)
        # Against the global step, as step/* (Lightning's convention): one x axis for every chart,
        # and the epoch itself as a scalar to read it off.
        at = self.global_step(record["epoch"], 0)
        self.writer.add_scalar("epoch", record["epoch"], at)
        for key, value in record.items():
            if key != "epoch" and isinstance(value, (int, float)):
                self.writer.add_scalar(f"epoch/{key}", value, at)
        self.writer.add_image("curves", np.asarray(curves_figure(self.history)), at, dataformats="HWC")
        self.writer.flush()

    def on_train_end(self, result: Any | None) -> None:
        self.writer.close()
