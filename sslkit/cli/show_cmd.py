"""``sslkit show-batch TASK``: save a PNG of what a pretext task feeds the network."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("show-batch")
    def show_batch_command(
        ctx: typer.Context,
        task: str = typer.Argument(..., help="Pretext task, e.g. rotation or context."),
        out: Path = typer.Option(Path("batch.png"), "--out", "-o", help="PNG file to write."),
        data: str | None = typer.Option(None, "--data", "-d", help="Dataset name or image folder [default: sample]."),
        images: int = typer.Option(4, "--images", "-n", min=1, max=64, help="How many images to draw from the data."),
        backbone: str | None = typer.Option(
            None, "--backbone", "-b", help="Backbone (the task may build its head for it)."
        ),
        preset: str | None = typer.Option(
            None, "--preset", help="The task's preset (may change task and data options)."
        ),
        sets: list[str] = typer.Option([], "--set", "-s", help="Override config keys, as for 'sslkit train'."),
        config: Path | None = typer.Option(None, "--config", "-c", help="A .toml or .json file of config keys."),
        seed: int = typer.Option(0, "--seed", help="Which images and which random draws."),
    ) -> None:
        """Apply the training augmentation and the task's transform to a few images and save
        them as a labelled grid: one row per image where the task's samples allow it."""
        import torch

        from ..config import assemble
        from ..data.augment import normalize
        from ..data.opener import sample_images
        from ..engine.trainer import build_model, make_crop
        from ..plugins import load_plugins
        from ..preview import save_preview
        from .train_cmd import _flags

        plugins = load_plugins(ctx.obj["plugins"])
        flags = _flags(**{"backbone.name": backbone, "data.name": data, "seed": seed})
        cfg = assemble(task, plugins, preset=preset, config_file=config, sets=sets, flags=flags)
        dataset = sample_images(cfg.data, plugins, images, seed)
        generator = torch.Generator().manual_seed(seed)
        mean, std = dataset.stats()
        # The same steps as the training loop: crop + flip, normalise, the task's transform.
        x = make_crop(cfg, dataset)(dataset.images, None, generator)
        x = normalize(x, cfg.data.mean or mean, cfg.data.std or std)
        model = build_model(cfg, plugins)
        with torch.no_grad():
            inputs, targets = model.task.prepare(x, generator)
            items = model.task.preview(inputs, targets)
        columns = len(items) // len(dataset) if len(items) % len(dataset) == 0 else min(8, len(items))
        path = save_preview(items, out, columns)
        typer.echo(
            f"wrote {path}: {len(items)} samples of '{task}' from {len(dataset)} images of {dataset.description}"
        )
