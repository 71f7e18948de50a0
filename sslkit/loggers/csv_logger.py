"""``--logger csv``: RUN/logs/steps.csv (one row per step report) and RUN/logs/epochs.csv.

No extra package: a spreadsheet or ``pandas.read_csv`` reads them. Rows are appended and flushed
as they come, so the files can be watched during training.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from ..engine.callbacks import RunContext
from . import StepCounter

STEP_FIELDS = ("epoch", "step", "global_step", "loss", "acc", "images_per_s")


class CSVLogger(StepCounter):
    def __init__(self, context: RunContext) -> None:
        super().__init__(context)
        self.folder = Path(context.out_dir) / "logs"
        self.epoch_fields: list[str] | None = None
        self.step_fields: list[str] | None = None
        self.fresh = True

    def on_start(self, info: dict[str, Any]) -> None:
        super().on_start(info)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.fresh = info.get("start_epoch", 0) == 0  # a resumed run appends to its files
        if self.fresh:
            self._write("steps.csv", STEP_FIELDS, None, fresh=True)

    def on_step(self, epoch: int, step: int, steps: int, metrics: dict[str, float]) -> None:
        row = {"epoch": epoch + 1, "step": step, "global_step": self.global_step(epoch, step), **metrics}
        if self.step_fields is None:
            self.step_fields = self._step_fields(metrics)
        self._write("steps.csv", self.step_fields, row)

    def _step_fields(self, metrics: dict[str, float]) -> list[str]:
        """The columns: the standard ones, then a task's own running metrics (a mix's
        ``rotation/loss`` ...), fixed by a fresh run's first report; a resumed run keeps its file's."""
        path = self.folder / "steps.csv"
        if not self.fresh and path.is_file():
            with open(path, newline="", encoding="utf-8") as f:
                return next(csv.reader(f), list(STEP_FIELDS))
        fields = [*STEP_FIELDS, *(k for k in metrics if k not in STEP_FIELDS)]
        self._write("steps.csv", fields, None, fresh=True)
        return fields

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        super().on_epoch_end(record)
        path = self.folder / "epochs.csv"
        if self.epoch_fields is None:
            self.epoch_fields = list(record)
            if not path.exists() or len(self.history) == 1 and record["epoch"] == 1:
                self._write("epochs.csv", self.epoch_fields, None, fresh=True)
        self._write("epochs.csv", self.epoch_fields, record)

    def _write(self, name: str, fields: Any, row: dict[str, Any] | None, fresh: bool = False) -> None:
        with open(self.folder / name, "w" if fresh else "a", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(fields), extrasaction="ignore")
            if fresh:
                writer.writeheader()
            if row is not None:
                writer.writerow(row)
