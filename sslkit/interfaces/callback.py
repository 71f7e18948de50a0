"""The callback interface: observers of the training loop (progress displays, experiment loggers).

The CLI's progress display is one :class:`Callback`; the experiment loggers (``--logger csv``,
``tensorboard``, ``wandb``) are others, and a plugin adds its own through the
``register_callbacks`` hook: ``register("mylogger", MyLogger)``, built as ``MyLogger(context)``
with a :class:`sslkit.engine.callbacks.RunContext`.
"""

from __future__ import annotations

from typing import Any


class Callback:
    """Override what you need; every method is a no-op by default. The training loop calls every
    callback it is given on the main process (rank 0) only."""

    def on_data_progress(self, done: int, total: int) -> None:
        """While the training data is being read (decoded, cached): ``done`` of ``total`` images."""

    def on_start(self, info: dict[str, Any]) -> None:
        """Once, before the first epoch: device, dataset sizes, steps per epoch, ..."""

    def on_step(self, epoch: int, step: int, steps: int, metrics: dict[str, float]) -> None:
        """Every few steps: running loss, pretext accuracy and images/s of this epoch."""

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        """After each epoch, with the record written to metrics.jsonl."""

    def on_train_end(self, result: Any | None) -> None:
        """Once, after training (``result`` is the :class:`~sslkit.engine.trainer.TrainResult`,
        or None when training failed): flush and close files and sessions here."""
