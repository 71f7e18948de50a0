"""``sslkit viz attention|filters|curves``: PNGs of what a run learnt (Pillow, no matplotlib)."""

from __future__ import annotations

from pathlib import Path

import typer


def _backbone(run: Path, plugins_spec: str | None):
    from ..plugins import load_plugins
    from ..run import load_run

    return load_run(run, load_plugins(plugins_spec))


def _save(image, out: Path) -> None:
    from ..files import atomic_write

    atomic_write(out, lambda tmp: image.save(tmp, format="PNG"))
    typer.echo(f"wrote {out} ({image.width}x{image.height})")


def register(app: typer.Typer) -> None:
    viz = typer.Typer(
        help="Pictures of a run: attention maps, first-layer filters, training curves.", no_args_is_help=True
    )
    app.add_typer(viz, name="viz")

    @viz.command("attention")
    def attention(
        ctx: typer.Context,
        run: Path = typer.Argument(..., help="Run folder of 'sslkit train'."),
        images: list[Path] = typer.Argument(..., help="Image files."),
        out: Path = typer.Option(Path("attention.png"), "--out", "-o", help="PNG to write."),
        stages: str | None = typer.Option(None, "--stages", help="Comma-separated stages [default: all]."),
        power: float | None = typer.Option(
            None, "--power", help="One p for every stage [default: 1, 2, 4 from shallow to deep]."
        ),
    ) -> None:
        """Attention maps (paper Figure 3): per stage, sum over channels of |activation|^p."""
        from ..viz.pictures import DEFAULT_POWERS, attention_figure, attention_maps, load_images

        trunk = _backbone(run, ctx.obj["plugins"])
        x = load_images([str(p) for p in images], trunk.input_shape[1])
        names = (
            [trunk.backbone.stage(s.strip()).name for s in stages.split(",")] if stages else trunk.backbone.stage_names
        )
        powers = (power,) if power is not None else DEFAULT_POWERS
        maps = attention_maps(trunk.backbone, x, trunk.mean, trunk.std, names, powers)
        _save(attention_figure(x, maps, powers), out)

    @viz.command("filters")
    def filters(
        ctx: typer.Context,
        run: Path = typer.Argument(..., help="Run folder of 'sslkit train'."),
        out: Path = typer.Option(Path("filters.png"), "--out", "-o", help="PNG to write."),
    ) -> None:
        """First-layer filters as a grid (paper Figure 4), each scaled to its own range."""
        from ..viz.pictures import filters_figure, first_conv

        trunk = _backbone(run, ctx.obj["plugins"])
        _save(filters_figure(first_conv(trunk.backbone).weight), out)

    @viz.command("curves")
    def curves(
        run: Path = typer.Argument(..., help="Run folder of 'sslkit train' (or its metrics.jsonl)."),
        out: Path = typer.Option(Path("curves.png"), "--out", "-o", help="PNG to write."),
    ) -> None:
        """Pretext loss and accuracy per epoch, training and held-out, from metrics.jsonl."""
        from ..viz.pictures import curves_figure, read_metrics

        _save(curves_figure(read_metrics(run)), out)
