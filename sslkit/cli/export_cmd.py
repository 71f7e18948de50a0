"""``sslkit export RUN``: a trained encoder in any registered format (ONNX, plain weights, safetensors
or a plugin's); the formats and their options come from the exporter registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import typer

from .completion import complete_exporters

Pool = Literal["avg", "flatten", "none"]


def _options(
    layer: str | None, pool: str | None, fp16: bool, images: list[Path], torchvision: bool, sets: list[str]
) -> dict[str, Any]:
    """The format options the user gave (and only those: each format validates its own)."""
    from ..config import parse_sets

    given: dict[str, Any] = {
        "layer": layer,
        "pool": pool,
        "fp16": fp16 or None,
        "images": [str(p) for p in images] or None,
        "torchvision": torchvision or None,
    }
    return {**{k: v for k, v in given.items() if v is not None}, **parse_sets(sets)}


def register(app: typer.Typer) -> None:
    @app.command("export")
    def export_command(
        ctx: typer.Context,
        run: Path = typer.Argument(..., help="Run folder of 'sslkit train' (or its checkpoint.pt)."),
        fmt: str = typer.Option(
            "onnx",
            "--format",
            "-f",
            autocompletion=complete_exporters,
            help="A registered export format: onnx (verified ONNX encoder), torch (the backbone's state_dict), "
            "safetensors (weights plus the run's description), or a plugin's (see 'sslkit plugins').",
        ),
        out: str | None = typer.Option(
            None,
            "--out",
            "-o",
            help="File to write, or a folder (ending in /) to write the format's default file in "
            "[default: the run folder's encoder.onnx / backbone.pt / backbone.safetensors].",
        ),
        layer: str | None = typer.Option(
            None, "--layer", "-l", help="onnx: stage to cut at [default: RUN/probe.json's best_layer, else the last]."
        ),
        pool: Pool | None = typer.Option(
            None, "--pool", help="onnx: avg (B x C global average, the default), flatten (B x C*H*W), none (maps)."
        ),
        fp16: bool = typer.Option(False, "--fp16", help="onnx: float16 weights and compute (inputs/outputs float32)."),
        images: list[Path] = typer.Option(
            [], "--images", help="onnx: verify on these image files/folders instead of the run's data (repeatable)."
        ),
        torchvision: bool = typer.Option(
            False,
            "--native",
            "--torchvision",
            help="torch, safetensors: key names of the model's own library (torchvision's for resnet18, timm's for "
            "timm/<model>).",
        ),
        sets: list[str] = typer.Option(
            [], "--set", "-s", help="Any option of the format: --set layer=block2 (repeatable; for plugins' formats)."
        ),
    ) -> None:
        """Export a trained encoder. ONNX files carry their preprocessing in metadata, have a dynamic
        batch dimension and are checked against PyTorch before they are written. Export works on
        the CPU on every machine (the check gives the same verdict everywhere); the file runs on
        any provider ('sslkit embed --provider')."""
        from rich.console import Console

        from ..export.runner import export_run
        from ..plugins import load_plugins

        plugins = load_plugins(ctx.obj["plugins"])
        options = _options(layer, pool, fp16, images, torchvision, sets)
        console = Console(stderr=False, soft_wrap=True)
        with console.status(f"exporting ({fmt}) ..."):
            report = export_run(run, fmt, out, plugins=plugins, **options)
        for line in report.summary():
            console.print(line, markup=False, highlight=False)
