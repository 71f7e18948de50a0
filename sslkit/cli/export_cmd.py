"""``sslkit export RUN``: an encoder as one verified ONNX file, or the backbone's plain weights."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

import typer

from ..errors import ConfigError

# Fixed values as Literal types: typer shows them as choices in --help and rejects others.
Format = Literal["onnx", "torch", "safetensors"]
Pool = Literal["avg", "flatten", "none"]


def _default_out(run: Path, fmt: str) -> Path:
    folder = run if run.is_dir() else run.parent
    from ..run import EXPORT_FILES

    return folder / EXPORT_FILES[fmt]


def check_out(out: Path, fmt: str) -> None:
    """Fail before the (slow) export on an output path that cannot be written."""
    from ..errors import ExportError

    if out.is_dir():
        raise ExportError(f"-o '{out}': is a folder; give a file name, e.g. -o {_default_out(out, fmt)}")
    ancestor = out.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ExportError(f"-o '{out}': '{ancestor}' is a file, not a folder; choose another output path")
    if not os.access(ancestor, os.W_OK):
        raise ExportError(
            f"-o '{out}': cannot write in '{ancestor}' (permission denied); choose a folder you can write to"
        )


def register(app: typer.Typer) -> None:
    @app.command("export")
    def export_command(
        ctx: typer.Context,
        run: Path = typer.Argument(..., help="Run folder of 'sslkit train' (or its checkpoint.pt)."),
        layer: str | None = typer.Option(
            None, "--layer", "-l", help="Stage to cut at (default: RUN/probe.json's best_layer, else the last stage)."
        ),
        pool: Pool = typer.Option(
            "avg", "--pool", help="avg: B x C global average; flatten: B x C*H*W; none: B x C x H x W maps."
        ),
        out: Path | None = typer.Option(
            None, "--out", "-o", help="File to write (default: RUN/encoder.onnx or RUN/backbone.pt)."
        ),
        fmt: Format = typer.Option(
            "onnx",
            "--format",
            "-f",
            help="onnx: verified ONNX encoder; torch: the backbone's state_dict alone; safetensors: the weights "
            "plus the run's description in the metadata.",
        ),
        fp16: bool = typer.Option(
            False, "--fp16", help="ONNX: float16 weights and compute (inputs and outputs stay float32)."
        ),
        images: list[Path] = typer.Option(
            [], "--images", help="ONNX: verify on these image files/folders instead of the run's data (repeatable)."
        ),
        torchvision: bool = typer.Option(
            False,
            "--torchvision",
            help="torch, safetensors: key names of the torchvision model itself (resnet18; replace its stem for "
            "small_stem runs).",
        ),
    ) -> None:
        """Export a trained encoder. ONNX files carry their preprocessing in metadata, have a dynamic
        batch dimension and are checked against PyTorch before they are written."""
        if fmt != "onnx" and (fp16 or images or layer or pool != "avg"):
            raise ConfigError(
                f"--format {fmt} writes the whole backbone's weights: --layer, --pool, --fp16 and --images are "
                "ONNX options"
            )
        if fmt == "onnx" and torchvision:
            raise ConfigError("--torchvision applies to --format torch and safetensors")
        from rich.console import Console

        from ..plugins import load_plugins

        console = Console(stderr=False, soft_wrap=True)
        plugins = load_plugins(ctx.obj["plugins"])
        out = out or _default_out(run, fmt)
        check_out(out, fmt)
        if fmt == "torch":
            from ..export.torch_weights import export_torch

            saved = export_torch(run, out, torchvision=torchvision, plugins=plugins)
            console.print(f"wrote {saved.path}: {saved.tensors} tensors of backbone '{saved.backbone}'; load it with:")
            console.print(saved.snippet(), markup=False, highlight=False)
            return
        if fmt == "safetensors":
            from ..export.safetensors_export import export_safetensors

            written = export_safetensors(run, out, torchvision=torchvision, plugins=plugins)
            console.print(
                f"wrote {written.path}: {written.tensors} tensors of backbone '{written.backbone}' with its "
                "config in the metadata; load it with:",
                markup=False,
                highlight=False,
            )
            console.print(written.snippet(), markup=False, highlight=False)
            return

        from ..export.onnx import export_onnx

        with console.status("exporting and verifying ..."):
            result = export_onnx(run, out, layer=layer, pool=pool, fp16=fp16, images=images or None, plugins=plugins)
        m = result.metadata
        console.print(
            f"wrote {result.path} ({result.bytes / 1e6:.2f} MB, {result.dtype}, opset {m['opset']}): "
            f"{m['backbone']} up to '{result.layer}', pool {result.pool} -> [batch, "
            f"{', '.join(map(str, result.output_shape))}]",
            markup=False,
            highlight=False,
        )
        c, h, w = json.loads(m["input_shape"])
        console.print(
            f"input: [batch, {c}, {h}, {w}] float32, {m['channel_order']}, x/255, mean {m['mean']}, std {m['std']}",
            markup=False,
            highlight=False,
        )
        for check in result.checks:
            console.print(
                f"  verified on {check.inputs}: max abs error {check.max_abs:.2e}, relative {check.rel:.2e}",
                markup=False,
                highlight=False,
            )
        console.print(
            f"[bold green]ok[/]: onnxruntime matches PyTorch within {result.tolerance:.0e} (relative to the "
            f"largest feature); {result.seconds:.1f}s"
        )
