"""``sslkit new-plugin NAME``: write a ready-to-install plugin package (see :mod:`sslkit.scaffold`)."""

from __future__ import annotations

from pathlib import Path

import typer

NEXT_STEPS = {
    "task": "sslkit train {name} --backbone nin --data sample --epochs 1 --set backbone.width=0.25",
    "backbone": "sslkit train TASK --backbone {name} --data sample --epochs 1",
    "probe": "sslkit plugins   # lists probe '{name}'",
}


def register(app: typer.Typer) -> None:
    @app.command("new-plugin")
    def new_plugin_command(
        name: str = typer.Argument(..., help="Name to register, e.g. flip (lowercase, digits, '_')."),
        kind: str = typer.Option("task", "--kind", help="What the plugin provides: task, backbone or probe."),
        out: Path = typer.Option(Path("."), "--out", "-o", help="Folder to create sslkit-NAME/ in."),
    ) -> None:
        """Write a plugin package: pyproject with entry point, working code, conformance test, README."""
        from ..scaffold import write_plugin

        target = write_plugin(name, kind, out)
        typer.echo(f"created {target}/ (a {kind} plugin registering '{name}')")
        typer.echo("next:")
        typer.echo(f"  pip install -e {target}")
        typer.echo(f"  python -m pytest {target}")
        typer.echo(f"  {NEXT_STEPS[kind].format(name=name)}")
