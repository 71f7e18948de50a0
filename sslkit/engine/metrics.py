"""An epoch's running sums, kept on the device (read back only when shown or at the epoch's end):
the loss and every task metric weighted by the samples they average over, the correct count.

A task's :class:`sslkit.Loss` metrics become ``train_<name>`` (and ``heldout_<name>``) in
``metrics.jsonl``; ``correct`` (classification tasks) becomes ``train_acc``. A metric named
``<part>/<name>`` (a task of a mix: ``rotation/loss``) becomes ``<part>/train_<name>``, so one
task's figures sort together; a metric averages over the steps that reported it (a mix that
alternates its tasks reports each on its own steps).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..errors import SSLKitError
from .step import StepOutput

# The keys of an epoch record that time it: two runs of the same numbers differ only in these.
TIMING_KEYS = ("seconds", "eval_seconds", "images_per_s", "samples_per_s")


class NonFiniteLoss(SSLKitError):
    """A task's loss became NaN or infinite: the run stops with a line naming it."""


def phase_key(phase: str, name: str) -> str:
    """A metric's key in an epoch record: ``loss`` -> ``train_loss``, ``rotation/loss`` ->
    ``rotation/train_loss``."""
    part, sep, last = name.rpartition("/")
    return f"{part}{sep}{phase}_{last}"


class EpochMeter:
    """Sums over the steps of an epoch (this process's); :meth:`totals` adds every process's."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.loss = torch.zeros((), device=device, dtype=torch.float64)
        self.correct: Tensor | None = None
        self.count = 0
        self.metrics: dict[str, Tensor] = {}
        self.metric_counts: dict[str, int] = {}  # samples of the steps that reported each metric
        self.seconds = 0.0  # spent on this epoch (an interrupted epoch's from its checkpoint, then ours)
        self.global_count = 0.0  # samples over every process, after totals()
        # The loss and each part's (a mix's "<part>/loss"): the step of this meter at which it was
        # first not finite (inf: never), on the device. A NaN spreads through the shared weights to
        # every task within a step, so the first to go names the culprit.
        self.first_bad: dict[str, Tensor] = {}
        self.steps = 0

    def _watch(self, out: StepOutput) -> None:
        self.steps += 1
        losses = [("loss", out.loss.value), *((k, v) for k, v in out.loss.metrics.items() if k.endswith("/loss"))]
        for name, value in losses:
            before = self.first_bad.get(name)
            if before is None:
                before = torch.full((), math.inf, device=self.device, dtype=torch.float64)
            now = (~torch.isfinite(value.detach())) & torch.isinf(before)
            self.first_bad[name] = torch.where(now, float(self.steps), before)

    def add(self, out: StepOutput) -> None:
        with torch.no_grad():
            self._watch(out)
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
                self.metric_counts[name] = self.metric_counts.get(name, 0) + m
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
        """[loss, correct, *metric sums, *metric counts, count] (one tensor: one read-back or all-reduce)."""
        counts = [float(self.metric_counts[name]) for name in self.metrics] + [float(self.count)]
        return torch.cat([torch.stack([self.loss, self._correct(), *self.metrics.values()]), self._host(counts)])

    def _host(self, values: list[float]) -> Tensor:
        return torch.tensor(values, dtype=torch.float64).to(self.device)

    def _split(self, values: list[float]) -> tuple[list[float], list[float]]:
        """(metric sums, metric counts) of a :meth:`_stack` read back."""
        k = len(self.metrics)
        return values[2 : 2 + k], values[2 + k : 2 + 2 * k]

    def _correct(self) -> Tensor:
        return self.correct if self.correct is not None else torch.zeros((), device=self.device, dtype=torch.float64)

    def _averages(self, sums: list[float]) -> dict[str, float]:
        count = sums[-1] or 1.0
        out = {"loss": sums[0] / count}
        if self.correct is not None:
            out["acc"] = sums[1] / count
        metric_sums, metric_counts = self._split(sums)
        for name, value, n in zip(self.metrics, metric_sums, metric_counts, strict=True):
            out[name] = value / (n or 1.0)
        return out

    def check_finite(self, task: str, epoch: int, step: int, values: dict[str, float]) -> None:
        """Stop on a loss that is NaN or infinite, naming the task (a mix's part first: its own
        ``<part>/loss``)."""
        bad = [k for k in ("loss", *(k for k in values if k.endswith("/loss"))) if not math.isfinite(values[k])]
        if not bad:
            return
        first = {k: float(self.first_bad[k]) if k in self.first_bad else math.inf for k in bad}  # a read-back, once
        key = min(bad, key=lambda k: (first[k], k == "loss"))  # a part before the total it spoils
        name = key.rpartition("/")[0] or task
        where = f"task '{name}'" + (f" (in the mix '{task}')" if name != task else "")
        raise NonFiniteLoss(
            f"{where}: the loss is {values[key]} at epoch {epoch + 1}, step {step}; lower optim.lr (or check "
            "the task's loss), then train again or --resume from the last checkpoint"
        )

    def state(self, world: int, seconds: float) -> dict[str, Any]:
        """What a mid-epoch checkpoint keeps: every process's sums so far (main process)."""
        sums = self._stack()
        if world > 1:
            torch.distributed.all_reduce(sums)
        values = sums.tolist()
        metric_sums, metric_counts = self._split(values)
        return {
            "loss": values[0],
            "correct": values[1] if self.correct is not None else None,
            "count": values[-1],
            "metrics": dict(zip(self.metrics, metric_sums, strict=True)),
            "metric_counts": dict(zip(self.metrics, metric_counts, strict=True)),
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
        counts = partial.get("metric_counts") or {}  # older checkpoints: every metric on every step
        for name, value in (partial.get("metrics") or {}).items():
            self.metrics[name] = torch.zeros((), device=self.device, dtype=torch.float64) + float(value)
            self.metric_counts[name] = int(counts.get(name, partial["count"]))
        self.count = int(partial["count"])
        self.seconds = float(partial["seconds"])
