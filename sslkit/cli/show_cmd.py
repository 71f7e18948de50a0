"""``sslkit show-batch TASK``: save a PNG of what a pretext task feeds the network."""

from __future__ import annotations

from pathlib import Path

import typer

from .completion import complete_backbones, complete_keys, complete_tasks


def register(app: typer.Typer) -> None:
    @app.command("show-batch")
    def show_batch_command(
        ctx: typer.Context,
        task: str = typer.Argument(..., autocompletion=complete_tasks, help="Pretext task, e.g. rotation or context."),
        out: Path = typer.Option(Path("batch.png"), "--out", "-o", help="PNG file to write."),
        data: str | None = typer.Option(None, "--data", "-d", help="Dataset name or image folder [default: sample]."),
        images: int = typer.Option(4, "--count", "-n", min=1, max=64, help="How many images to draw from the data."),
        backbone: str | None = typer.Option(
            None,
            "--backbone",
            "-b",
            autocompletion=complete_backbones,
            help="Backbone (the task may build its head for it).",
        ),
        preset: str | None = typer.Option(
            None, "--preset", help="The task's preset (may change task and data options)."
        ),
        sets: list[str] = typer.Option(
            [], "--set", "-s", autocompletion=complete_keys, help="Override config keys, as for 'sslkit train'."
        ),
        config: Path | None = typer.Option(None, "--config", "-c", help="A .toml or .json file of config keys."),
        seed: int = typer.Option(0, "--seed", help="Which images and which random draws."),
        device: str = typer.Option(
            "cpu", "--device", help="Where the task draws its inputs: cpu, cuda, cuda:N, mps or auto."
        ),
    ) -> None:
        """Apply the training augmentation and the task's transform to a few images and save
        them as a labelled grid: one row per image where the task's samples allow it."""
        from ..config import assemble
        from ..plugins import load_plugins
        from ..viz.batch import batch_items, save_preview
        from .train_cmd import _flags

        plugins = load_plugins(ctx.obj["plugins"])
        flags = _flags(**{"backbone.name": backbone, "data.name": data, "seed": seed, "device": device})
        cfg = assemble(task, plugins, preset=preset, config_file=config, sets=sets, flags=flags)
        items, columns, dataset = batch_items(cfg, plugins, images, seed)
        path = save_preview(items, out, columns)
        typer.echo(
            f"wrote {path}: {len(items)} samples of '{task}' from {len(dataset)} images of {dataset.description}"
        )
