"""An epoch's running sums, kept on the device (read back only when shown or at the epoch's end):
the loss and every task metric weighted by the samples they average over, the correct count.

A task's :class:`sslkit.Loss` metrics become ``train_<name>`` (and ``heldout_<name>``) in
``metrics.jsonl``; ``correct`` (classification tasks) becomes ``train_acc``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..errors import SSLKitError
from .step import StepOutput


class NonFiniteLoss(SSLKitError):
    """A task's loss became NaN or infinite: the run stops with a line naming it."""


class EpochMeter:
    """Sums over the steps of an epoch (this process's); :meth:`totals` adds every process's."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.loss = torch.zeros((), device=device, dtype=torch.float64)
        self.correct: Tensor | None = None
        self.count = 0
        self.metrics: dict[str, Tensor] = {}
        self.seconds = 0.0  # spent on this epoch (an interrupted epoch's from its checkpoint, then ours)
        self.global_count = 0.0  # samples over every process, after totals()

    def add(self, out: StepOutput) -> None:
        with torch.no_grad():
            m = out.samples
            self.loss += out.loss.value.detach().double() * m
            if out.correct is not None:
                if self.correct is None:
                    self.correct = torch.zeros((), device=self.device, dtype=torch.float64)
                self.correct += out.correct.double()
            for name, value in out.loss.metrics.items():
                if name not in self.metrics:
                    self.metrics[name] = torch.zeros((), device=self.device, dtype=torch.float64)
                self.metrics[name] += value.detach().double() * m
            self.count += m

    def running(self) -> dict[str, float]:
        """This process's averages so far (one read-back from the device)."""
        return self._averages(self._stack().tolist())

    def totals(self, world: int) -> dict[str, float]:
        """The averages over every process's samples (one all-reduce)."""
        sums = self._stack()
        if world > 1:
            torch.distributed.all_reduce(sums)
        values = sums.tolist()
        self.global_count = values[-1]
        return self._averages(values)

    def _stack(self) -> Tensor:
        parts = [self.loss, self._correct(), *self.metrics.values()]
        return torch.stack([*parts, torch.tensor(float(self.count), dtype=torch.float64).to(self.device)])

    def _correct(self) -> Tensor:
        return self.correct if self.correct is not None else torch.zeros((), device=self.device, dtype=torch.float64)

    def _averages(self, sums: list[float]) -> dict[str, float]:
        count = sums[-1] or 1.0
        out = {"loss": sums[0] / count}
        if self.correct is not None:
            out["acc"] = sums[1] / count
        for name, value in zip(self.metrics, sums[2:-1], strict=True):
            out[name] = value / count
        return out

    def check_finite(self, task: str, epoch: int, step: int, values: dict[str, float]) -> None:
        if not math.isfinite(values["loss"]):
            raise NonFiniteLoss(
                f"task '{task}': the loss is {values['loss']} at epoch {epoch + 1}, step {step}; "
                "lower optim.lr (or check the task's loss), then train again or --resume from the last checkpoint"
            )

    def state(self, world: int, seconds: float) -> dict[str, Any]:
        """What a mid-epoch checkpoint keeps: every process's sums so far (main process)."""
        sums = self._stack()
        if world > 1:
            torch.distributed.all_reduce(sums)
        values = sums.tolist()
        return {
            "loss": values[0],
            "correct": values[1] if self.correct is not None else None,
            "count": values[-1],
            "metrics": dict(zip(self.metrics, values[2:-1], strict=True)),
            "seconds": seconds,
        }

    def restore(self, partial: dict[str, Any] | list[float]) -> None:
        """Continue an interrupted epoch's sums (a checkpoint's ``partial``; the list of sslkit
        0.1: loss, correct, count, seconds)."""
        if isinstance(partial, list):
            partial = {"loss": partial[0], "correct": partial[1], "count": partial[2], "seconds": partial[3]}
        self.loss += float(partial["loss"])
        if partial.get("correct") is not None:
            self.correct = self._correct() + float(partial["correct"])
        for name, value in (partial.get("metrics") or {}).items():
            self.metrics[name] = torch.zeros((), device=self.device, dtype=torch.float64) + float(value)
        self.count = int(partial["count"])
        self.seconds = float(partial["seconds"])
