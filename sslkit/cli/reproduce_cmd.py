"""``sslkit reproduce NAME --preset paper|repo|quick``: a paper's protocol, our numbers beside its."""

from __future__ import annotations

from pathlib import Path

import typer

from .completion import complete_recipes


def register(app: typer.Typer) -> None:
    @app.command("reproduce")
    def reproduce_command(
        ctx: typer.Context,
        name: str = typer.Argument(
            ...,
            autocompletion=complete_recipes,
            help="A registered reproduction: rotnet-cifar10, context-cifar10, multitask-cifar10 or a plugin's "
            "(see 'sslkit plugins').",
        ),
        preset: str = typer.Option(
            "quick", "--preset", help="paper, repo (full protocols, GPU hours) or quick (CPU, ~15 min)."
        ),
        data: str | None = typer.Option(
            None, "--data", "-d", help="Labelled training images: dataset name or folder [default: cifar10]."
        ),
        test_data: str | None = typer.Option(
            None,
            "--test-data",
            help="Labelled test images [default: the dataset's test split, else a carved seeded 20%].",
        ),
        out: Path | None = typer.Option(
            None, "--out", "-o", help="Output folder [default: runs/reproduce-NAME-PRESET]; re-running continues it."
        ),
        device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
        seed: int = typer.Option(0, "--seed", help="Seeds the pretext run, the splits and the probes."),
        smoke: bool = typer.Option(False, "--smoke", hidden=True, help="Tiny step budget (tests)."),
    ) -> None:
        """Pretext training, the paper's probes and baselines, and a table of ours vs the paper's."""
        from rich.console import Console
        from rich.table import Table

        from ..plugins import load_plugins
        from ..progress import RichProgress
        from ..reproduce.runner import get_recipe, reproduce

        plugins = load_plugins(ctx.obj["plugins"])
        get_recipe(name, preset, plugins)  # unknown name / missing task plugin: one line, before any work
        out = out or Path("runs") / f"reproduce-{name}-{preset}"
        err = Console(stderr=True, soft_wrap=True)
        table = reproduce(
            name,
            preset,
            out,
            plugins,
            data=data,
            test_data=test_data,
            device=device,
            seed=seed,
            smoke=smoke,
            callbacks=[RichProgress(err)],
            on_event=lambda msg: err.print(f"[bold]>[/] {msg}"),
        )
        t = Table(title=f"{name} ({preset}): CIFAR-10-style test accuracy %, last epoch")
        for col in ("row", "ours", "val", "paper", "probe input", "s"):
            t.add_column(col, justify="left" if col in ("row", "probe input") else "right")
        for r in table["rows"]:
            t.add_row(
                r["label"],
                f"{r['ours']:.2f}",
                "" if r["val"] is None else f"{r['val']:.2f}",
                "" if r["paper"] is None else f"{r['paper']:.2f}",
                r["mode"],
                f"{r['seconds']:.0f}",
            )
        console = Console(soft_wrap=True)
        console.print(t)
        console.print(f"test: {table['test']}; validation: {table['validation']}")
        for f in table["findings"]:
            mark = "[green]holds[/]" if f["holds"] else "[red]does not hold[/]"
            console.print(f"{mark}: {f['claim']} ({f['margin']:+.2f} points)")
        console.print(
            f"total {table['total_seconds']:.0f} s; written {out / 'reproduce.md'} and {out / 'reproduce.json'}"
        )
