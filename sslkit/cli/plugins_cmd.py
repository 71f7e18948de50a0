"""``sslkit plugins``: what loaded, from which distribution and version, and what failed."""

from __future__ import annotations

import json

import typer


def register(app: typer.Typer) -> None:
    @app.command("plugins")
    def plugins_command(
        ctx: typer.Context,
        as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
    ) -> None:
        """List pretext tasks, backbones, probes and datasets, with the plugin that provides each."""
        from ..plugins import load_plugins
        from ..registry import as_rows

        plugins = load_plugins(ctx.obj["plugins"])
        rows = [row for reg in plugins.registries() for row in as_rows(reg)]
        records = [vars(r) for r in plugins.records]
        if as_json:
            typer.echo(json.dumps({"plugins": records, "provides": rows}, indent=2))
            return
        from rich.console import Console
        from rich.table import Table

        console = Console()
        table = Table(title="sslkit plugins", title_justify="left")
        for col in ("kind", "name", "plugin", "distribution", "version"):
            table.add_column(col)
        for row in rows:
            table.add_row(*(row[c] or "-" for c in ("kind", "name", "plugin", "distribution", "version")))
        console.print(table)
        broken = [r for r in plugins.records if r.status != "loaded"]
        for r in broken:
            console.print(f"[yellow]{r.status}[/]: plugin '{r.name}' ({r.distribution or '-'} {r.version or ''}) {r.error or ''}")
