"""The rich progress display of ``sslkit train`` (rich stays at the edge, out of the engine)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..engine.callbacks import Callback


class RichProgress(Callback):
    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True, soft_wrap=True)
        self.progress: Progress | None = None
        self.task_id: Any = None
        self.epochs = 0

    def on_start(self, info: dict[str, Any]) -> None:
        self.epochs = info["epochs"]
        self.console.print(
            f"[bold]{info['dataset']}[/]: {info['train_images']} train / {info['heldout_images']} held-out images, "
            f"{info['steps_per_epoch']} steps/epoch on {info['device']}"
            + (f" x{info['world_size']} processes" if info["world_size"] > 1 else "")
            + f", backbone {info['parameters'] / 1e6:.2f} M parameters, {info['precision']}"
            + (", channels_last" if info["channels_last"] else "")
        )
        if info["start_epoch"]:
            self.console.print(f"resuming after epoch {info['start_epoch']} of {info['epochs']}")
        self.console.print(f"run folder: {info['out_dir']}")

    def on_step(self, epoch: int, step: int, steps: int, metrics: dict[str, float]) -> None:
        if self.progress is None:
            self.progress = Progress(
                TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]:.3f}  acc {task.fields[acc]:.1%}  {task.fields[ips]:.0f} img/s"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
            )
            self.progress.start()
            self.task_id = self.progress.add_task("train", total=steps, epoch=epoch + 1, epochs=self.epochs, loss=0.0, acc=0.0, ips=0.0)
        self.progress.update(
            self.task_id, completed=step, epoch=epoch + 1,
            loss=metrics["loss"], acc=metrics["acc"], ips=metrics["images_per_s"],
        )

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
        held = f"  held-out acc {record['heldout_acc']:.1%}" if "heldout_acc" in record else ""
        self.console.print(
            f"epoch {record['epoch']}/{self.epochs}  loss {record['train_loss']:.4f}  "
            f"pretext acc {record['train_acc']:.1%}{held}  {record['images_per_s']:.0f} img/s  {record['seconds']:.0f}s"
        )

    def finish(self, result: Any) -> None:
        last = result.last
        if "heldout_acc" in last:
            self.console.print(f"[bold green]done[/]: held-out pretext accuracy {last['heldout_acc']:.1%}; checkpoint {result.out_dir / 'checkpoint.pt'}")
        else:
            self.console.print(f"[bold green]done[/]: checkpoint {result.out_dir / 'checkpoint.pt'}")
