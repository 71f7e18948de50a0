"""``sslkit train TASK``: pretrain a backbone on a pretext task."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import typer

from ..errors import ConfigError
from .completion import complete_backbones, complete_data, complete_keys, complete_loggers, complete_tasks

# RunConfig.precision's values, spelled out so that --help shows them without importing pydantic
# (tests/test_api.py checks that the two agree).
Precision = Literal["fp32", "bf16", "fp16", "auto"]


def _flags(**values: Any) -> dict[str, Any]:
    """CLI flags as a config layer; flags left out do not override anything."""
    from ..config import nested

    return nested({k: v for k, v in values.items() if v is not None}, "flag")


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train_command(
        ctx: typer.Context,
        task: str = typer.Argument(
            ...,
            autocompletion=complete_tasks,
            help="Pretext task, e.g. rotation, or several joined by + (rotation+context); see 'sslkit plugins'.",
        ),
        backbone: str | None = typer.Option(
            None, "--backbone", "-b", autocompletion=complete_backbones, help="Backbone name (default: nin)."
        ),
        data: str | None = typer.Option(
            None, "--data", "-d", autocompletion=complete_data, help="Dataset name or image folder (default: sample)."
        ),
        epochs: int | None = typer.Option(None, "--epochs", "-e", help="Epochs (default: the preset's)."),
        batch_size: int | None = typer.Option(
            None, "--batch-size", help="Images per step before pretext expansion (default: 128)."
        ),
        preset: str | None = typer.Option(None, "--preset", help="The task's recipe, e.g. paper or repo for rotation."),
        sets: list[str] = typer.Option(
            [],
            "--set",
            "-s",
            autocompletion=complete_keys,
            help="Override any config key: --set backbone.width=0.25 (repeatable).",
        ),
        config: Path | None = typer.Option(None, "--config", "-c", help="A .toml or .json file of config keys."),
        out: Path | None = typer.Option(None, "--out", "-o", help="Run folder (default: runs/TASK-BACKBONE-TIME)."),
        resume: str | None = typer.Option(
            None,
            "--resume",
            metavar="[auto]",  # a bare --resume is given the value 'yes' by cli.optional_resume_value
            help="Continue the run in --out from its last checkpoint; '--resume auto' (or --resume=auto) starts it "
            "when there is none.",
        ),
        device: str | None = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:N or mps (default: auto)."),
        seed: int | None = typer.Option(None, "--seed", help="Random seed (default: 0)."),
        precision: Precision | None = typer.Option(None, "--precision", help="Compute precision (default: fp32)."),
        logger: list[str] = typer.Option(
            [],
            "--logger",
            autocompletion=complete_loggers,
            metavar="NAME",
            help="Experiment logger: csv, tensorboard, wandb or a plugin's (repeatable; see 'sslkit plugins').",
        ),
    ) -> None:
        """Pretrain a backbone on a pretext task; writes checkpoints and metrics to the run folder."""
        from ..api import default_out, train_config
        from ..config import assemble
        from ..plugins import load_plugins

        plugins = load_plugins(ctx.obj["plugins"])
        flags = _flags(
            **{
                "backbone.name": backbone,
                "data.name": data,
                "epochs": epochs,
                "data.batch_size": batch_size,
                "device": device,
                "seed": seed,
                "precision": precision,
            }
        )
        cfg = assemble(task, plugins, preset=preset, config_file=config, sets=sets, flags=flags)
        if resume not in (None, "yes", "auto"):
            raise ConfigError(f"--resume {resume}: use --resume (continue the run) or --resume auto (or start it)")
        if resume is not None and out is None:
            raise ConfigError("--resume needs --out RUN_FOLDER: the run to continue")
        if out is None:
            out = default_out(task, cfg.backbone["name"])
        train_config(
            cfg,
            out,
            plugins=plugins,
            resume="auto" if resume == "auto" else resume == "yes",
            loggers=logger,
            next_steps=True,
        )
