"""Hooks into the training loop for progress display and logging (the CLI's rich bar is one)."""

from __future__ import annotations

from typing import Any


class Callback:
    """Override what you need; every method is a no-op by default. Called on rank 0 only
    for display purposes by the CLI (the loop calls every callback it is given)."""

    def on_start(self, info: dict[str, Any]) -> None:
        """Once, before the first epoch: device, dataset sizes, steps per epoch, ..."""

    def on_step(self, epoch: int, step: int, steps: int, metrics: dict[str, float]) -> None:
        """Every few steps: running loss, pretext accuracy and images/s of this epoch."""

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        """After each epoch, with the record written to metrics.jsonl."""
