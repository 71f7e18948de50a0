"""``--logger wandb``: a Weights & Biases run (``pip install "sslkit[loggers]"``).

Honours W&B's own settings: ``WANDB_MODE=offline`` (or ``disabled``) keeps everything on disk,
``WANDB_PROJECT`` (default ``sslkit``), ``WANDB_ENTITY``, ``WANDB_API_KEY``. Files go to
``RUN/wandb``; the W&B run is named after the run folder. Logged: the config, ``step/*`` scalars
against the global step, ``epoch/*`` at each epoch's last step, the ``show-batch`` picture and
the curves.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from ..engine.callbacks import RunContext
from ..viz.batch import batch_picture
from ..viz.pictures import curves_figure
from . import StepCounter, need

log = logging.getLogger(__name__)


class WandbLogger(StepCounter):
    def __init__(self, context: RunContext) -> None:
        super().__init__(context)
        self.wandb = need("wandb", "wandb")
        self.run: Any = None

    def on_start(self, info: dict[str, Any]) -> None:
        super().on_start(info)
        out = Path(self.context.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.run = self.wandb.init(
            project=os.environ.get("WANDB_PROJECT", "sslkit"),
            name=out.name,
            dir=str(out),
            config=self.context.config.model_dump(mode="json"),
            reinit="create_new",
        )
        try:
            picture = batch_picture(self.context.config, self.context.plugins)
            self.run.log({"show-batch": self.wandb.Image(picture)}, step=0)
        except Exception as exc:  # a picture must never stop training; say why it is missing
            log.warning("wandb: no show-batch picture (%s: %s)", type(exc).__name__, exc)

    def on_step(self, epoch: int, step: int, steps: int, metrics: dict[str, float]) -> None:
        self.run.log({f"step/{k}": v for k, v in metrics.items()}, step=self.global_step(epoch, step))

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        super().on_epoch_end(record)
        values = {f"epoch/{k}": v for k, v in record.items() if isinstance(v, (int, float))}
        values["curves"] = self.wandb.Image(curves_figure(self.history))
        self.run.log(values, step=self.global_step(record["epoch"] - 1, self.steps_per_epoch))

    def on_train_end(self, result: Any | None) -> None:
        if self.run is not None:
            self.run.finish(exit_code=0 if result is not None else 1)
