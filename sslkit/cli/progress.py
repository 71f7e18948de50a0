"""The progress display of ``sslkit train`` (rich stays at the edge, out of the engine).

On a terminal: a live bar per epoch. When the output is piped or redirected (CI logs, ``| tee``,
``nohup``): no bar, one plain line every few steps instead, so a log file shows progress too.
After training: what to do next with the run (probe, export, viz), with its path.
"""

from __future__ import annotations

import shlex
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..interfaces import Callback


class CountBar:
    """``with CountBar("packing") as update:`` a bar of images done, with images/s and ETA, fed by
    the library's ``on_progress(done, total)``. A resumed job starts past zero: the rate counts
    this run's images only."""

    def __init__(self, label: str, console: Console | None = None, transient: bool = True) -> None:
        self.progress = Progress(
            TextColumn(label),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:.0f} img/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console or Console(stderr=True, soft_wrap=True),
            transient=transient,
        )
        self.task = self.progress.add_task(label, total=None, rate=0.0)
        self.t0 = time.perf_counter()
        self.first: int | None = None

    @property
    def console(self) -> Console:
        return self.progress.console

    def __enter__(self) -> CountBar:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def update(self, done: int, total: int) -> None:
        if self.first is None:
            self.first = done
            self.t0 = time.perf_counter()
        rate = (done - self.first) / max(time.perf_counter() - self.t0, 1e-9)
        self.progress.update(self.task, completed=done, total=total, rate=rate)


class RichProgress(Callback):
    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True, soft_wrap=True)
        self.progress: Progress | None = None
        self.packing: CountBar | None = None
        self.task_id: Any = None
        self.epochs = 0

    def on_data_progress(self, done: int, total: int) -> None:
        """Packing a folder into the store cache (once): a bar with images/s and ETA."""
        if self.packing is None:
            self.packing = CountBar("packing images", self.console).__enter__()
        self.packing.update(done, total)
        if done >= total:
            self.packing.__exit__()
            self.packing = None

    def on_start(self, info: dict[str, Any]) -> None:
        if self.packing is not None:  # a packing bar left open
            self.packing.__exit__()
            self.packing = None
        self.epochs = info["epochs"]
        self.console.print(
            f"[bold]{info['dataset']}[/]: {info['train_images']} train / {info['heldout_images']} held-out images, "
            f"{info['steps_per_epoch']} steps/epoch on {info['device']}"
            + (f" x{info['world_size']} processes" if info["world_size"] > 1 else "")
            + f", backbone {info['parameters'] / 1e6:.2f} M parameters, {info['precision']}"
            + (", channels_last" if info["channels_last"] else "")
        )
        if info.get("start_step"):
            self.console.print(
                f"resuming after epoch {info['start_epoch']} of {info['epochs']}, at step {info['start_step']} "
                f"of epoch {info['start_epoch'] + 1}"
            )
        elif info["start_epoch"]:
            self.console.print(f"resuming after epoch {info['start_epoch']} of {info['epochs']}")
        if info.get("streaming"):
            self.console.print(f"streaming from the store: {info['crop']} crops at {info['image_size']} px")
        self.console.print(f"run folder: {info['out_dir']}")

    def on_step(self, epoch: int, step: int, steps: int, metrics: dict[str, float]) -> None:
        if self.progress is None:
            self.progress = Progress(
                TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[metrics]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
            )
            self.progress.start()
            self.task_id = self.progress.add_task("train", total=steps, epoch=epoch + 1, epochs=self.epochs, metrics="")
        self.progress.update(self.task_id, completed=step, epoch=epoch + 1, metrics=metrics_text(metrics))

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
        self.console.print(
            f"epoch {record['epoch']}/{self.epochs}  {epoch_text(record)}  "
            f"{record['images_per_s']:.0f} img/s  {record['seconds']:.0f}s",
            markup=False,
            highlight=False,
        )

    def finish(self, result: Any) -> None:
        last = result.last
        if "heldout_acc" in last:
            self.console.print(
                f"[bold green]done[/]: held-out pretext accuracy {last['heldout_acc']:.1%}; checkpoint "
                f"{result.out_dir / 'checkpoint.pt'}"
            )
        else:
            self.console.print(f"[bold green]done[/]: checkpoint {result.out_dir / 'checkpoint.pt'}")
        self.console.print(next_steps(result.out_dir, result.config.data.name), markup=False, highlight=False)


class PlainProgress(RichProgress):
    """For output that is not a terminal: a line every ``every`` steps (default: about ten per
    epoch), no live bar that a log file would show as nothing, or as control characters."""

    def __init__(self, console: Console | None = None, every: int | None = None) -> None:
        super().__init__(console)
        self.packing_announced = False
        self.every = every
        self.printed = 0

    def on_data_progress(self, done: int, total: int) -> None:
        # No bar in a log: a line when packing starts and one when it ends.
        if not self.packing_announced or done >= total:
            what = "packed" if done >= total else "packing"
            self.console.print(f"{what} {total:,} images into the store cache", markup=False, highlight=False)
            self.packing_announced = done < total

    def on_step(self, epoch: int, step: int, steps: int, metrics: dict[str, float]) -> None:
        every = self.every or max(1, steps // 10)
        if step < self.printed:  # a new epoch
            self.printed = 0
        if step < steps and step - self.printed < every:
            return
        self.printed = step
        self.console.print(
            f"epoch {epoch + 1}/{self.epochs} step {step}/{steps}  {metrics_text(metrics)}",
            markup=False,
            highlight=False,
        )


def _value(name: str, value: float) -> str:
    return f"{name} {value:.1%}" if name.endswith("acc") else f"{name} {value:.4g}"


def metrics_text(metrics: dict[str, float]) -> str:
    """A step's running metrics in one line: loss, accuracy (when the task has one), the task's
    own metrics, images/s."""
    parts = [_value(k, v) for k, v in metrics.items() if k != "images_per_s"]
    if "images_per_s" in metrics:
        parts.append(f"{metrics['images_per_s']:.0f} img/s")
    return "  ".join(parts)


def epoch_text(record: dict[str, Any]) -> str:
    """An epoch's record in one line: every train_, heldout_ and monitor (knn) figure."""
    keys = [k for k in record if k.startswith(("train_", "heldout_")) or "knn" in k]
    return "  ".join(
        _value(k.replace("train_", "").replace("heldout_", "held-out ").replace("_", " "), record[k]) for k in keys
    )


def make_progress(console: Console | None = None) -> RichProgress:
    """A live bar on a terminal, plain lines when the output is piped or redirected."""
    console = console or Console(stderr=True, soft_wrap=True)
    return RichProgress(console) if console.is_terminal else PlainProgress(console)


def next_steps(run: Any, data: str) -> str:
    """The commands that use a finished run, with its path filled in (shell-quoted)."""
    r = shlex.quote(str(run))
    d = "" if data == "sample" else f" --data {shlex.quote(str(data))}"
    return "\n".join(
        [
            "next:",
            f"  sslkit probe {r} --layers all --probe knn{d}   # how good are the features, per stage",
            f"  sslkit export {r}                            # encoder.onnx (or --format torch|safetensors)",
            f"  sslkit viz curves {r} -o {shlex.quote(str(run) + '/curves.png')}",
            f'  python -c "import sslkit; run = sslkit.load({str(run)!r}); print(run.history[-1])"',
        ]
    )
