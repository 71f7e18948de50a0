"""The progress display of the two front doors, ``sslkit`` and the Python API (rich stays at the
edge, out of the engine): training, probing, embedding and packing show the same display from
the CLI and from ``sslkit.train`` / ``run.probe`` / ``run.embed``.

In a terminal or a notebook (rich renders in Jupyter): a live bar. When the output is piped or
redirected (CI logs, ``| tee``, ``nohup``): no bar, one plain line every few steps instead, so a
log file shows progress too. After ``sslkit train``: what to do next with the run, with its path.
"""

from __future__ import annotations

import shlex
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .interfaces import Callback
from .probes.training import ProbeObserver


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
        self.label = label
        self.task = self.progress.add_task(label, total=None, rate=0.0)
        self.t0 = time.perf_counter()
        self.first: int | None = None

    @property
    def console(self) -> Console:
        return self.progress.console

    @property
    def live(self) -> bool:
        return self.console.is_terminal or self.console.is_jupyter

    def __enter__(self) -> CountBar:
        if self.live:  # a log gets one line at the end instead
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live:
            self.progress.stop()
        console = self.progress.console
        done = self.progress.tasks[0].completed if self.progress.tasks else 0
        failed = bool(exc) and exc[0] is not None  # the error's own line says what happened
        if not (console.is_terminal or console.is_jupyter) and done and not failed:  # a log: the bar showed nothing
            seconds = time.perf_counter() - self.t0
            console.print(f"{self.label}: {int(done)} images in {seconds:.1f} s", markup=False, highlight=False)

    def update(self, done: int, total: int) -> None:
        if self.first is None:
            self.first = done
            self.t0 = time.perf_counter()
        rate = (done - self.first) / max(time.perf_counter() - self.t0, 1e-9)
        self.progress.update(self.task, completed=done, total=total, rate=rate)


class RichProgress(Callback):
    """A live bar per epoch, started when the epoch starts (its clock too), then a line per epoch."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or default_console()
        self.progress: Progress | None = None
        self.packing: CountBar | None = None
        self.task_id: Any = None
        self.epochs = 0
        self.steps = 0

    def _start_bar(self, epoch: int, done: int = 0) -> None:
        """The bar of ``epoch`` (0-based), from step ``done`` (a resumed epoch starts past zero)."""
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
        self.task_id = self.progress.add_task(
            "train", total=self.steps, completed=done, epoch=epoch + 1, epochs=self.epochs, metrics=""
        )

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
        self.steps = int(info["steps_per_epoch"])
        if info["start_epoch"] < self.epochs:
            self._start_bar(int(info["start_epoch"]), int(info.get("start_step") or 0))

    def on_step(self, epoch: int, step: int, steps: int, metrics: dict[str, float]) -> None:
        if self.progress is None:
            self.steps = steps
            self._start_bar(epoch)
        assert self.progress is not None
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
        if record["epoch"] < self.epochs:  # the next epoch's bar, its clock running from now
            self._start_bar(int(record["epoch"]))

    def finish(self, result: Any, next_steps: bool = True) -> None:
        if result is None:  # training failed: its error says why
            return
        last = result.last
        if "heldout_acc" in last:
            self.console.print(
                f"[bold green]done[/]: held-out pretext accuracy {last['heldout_acc']:.1%}; checkpoint "
                f"{result.out_dir / 'checkpoint.pt'}"
            )
        else:
            self.console.print(f"[bold green]done[/]: checkpoint {result.out_dir / 'checkpoint.pt'}")
        if next_steps:
            self.console.print(next_commands(result.out_dir, result.config.data.name), markup=False, highlight=False)


class PlainProgress(RichProgress):
    """For output that is not a terminal: a line every ``every`` steps (default: about ten per
    epoch), no live bar that a log file would show as nothing, or as control characters."""

    def __init__(self, console: Console | None = None, every: int | None = None) -> None:
        super().__init__(console)
        self.packing_announced = False
        self.every = every
        self.printed = 0

    def _start_bar(self, epoch: int, done: int = 0) -> None:
        """No live bar in a log."""

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


def _label(key: str) -> str:
    """``heldout_acc`` -> ``held-out acc``; a mix's ``context/heldout_acc`` -> ``context/held-out acc``."""
    part, sep, last = key.rpartition("/")
    return part + sep + last.replace("train_", "").replace("heldout_", "held-out ").replace("_", " ")


def epoch_text(record: dict[str, Any]) -> str:
    """An epoch's record in one line: every train_, heldout_ (a mix's tasks' too: ``rotation/train_loss``)
    and monitor (knn) figure."""
    keys = [k for k in record if k.rpartition("/")[2].startswith(("train_", "heldout_")) or "knn" in k]
    return "  ".join(_value(_label(k), record[k]) for k in keys)


class ProbeProgress(ProbeObserver):
    """A probe's progress: a bar while the frozen trunk embeds each split, a line per probe epoch."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or default_console()
        self.bar: CountBar | None = None

    def on_features(self, split: str, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = CountBar(f"features: {split}", self.console).__enter__()
        self.bar.update(done, total)
        if done >= total:
            self.bar.__exit__()
            self.bar = None

    def on_epoch(self, layer: str, record: dict[str, Any]) -> None:
        self.console.print(
            f"{layer} epoch {record['epoch']}  loss {record['train_loss']:.4f}  train {record['train_acc']:.1%}"
            + (f"  val {record['val_acc']:.1%}" if "val_acc" in record else ""),
            markup=False,
            highlight=False,
        )


def default_console() -> Console:
    """stderr in a terminal or a log (stdout stays for results); the cell's output in a notebook."""
    probe = Console()
    return Console(soft_wrap=True) if probe.is_jupyter else Console(stderr=True, soft_wrap=True)


def make_progress(console: Console | None = None) -> RichProgress:
    """A live bar in a terminal or a notebook, plain lines when the output is piped or redirected."""
    console = console or default_console()
    live = console.is_terminal or console.is_jupyter
    return RichProgress(console) if live else PlainProgress(console)


def next_commands(run: Any, data: str) -> str:
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
