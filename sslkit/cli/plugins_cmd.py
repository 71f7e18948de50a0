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
        """List pretext tasks, backbones, probes, datasets, loggers, export formats and reproductions, with the
        plugin that provides each."""
        from ..api import EXTRAS, optional_packages
        from ..plugins import load_plugins
        from ..registry import as_rows, conflict_rows

        plugins = load_plugins(ctx.obj["plugins"])
        rows = [row for reg in plugins.registries() for row in as_rows(reg)]
        conflicts = [row for reg in plugins.registries() for row in conflict_rows(reg)]
        records = [vars(r) for r in plugins.records]
        if as_json:
            typer.echo(
                json.dumps(
                    {"plugins": records, "provides": rows, "conflicts": conflicts, "optional": optional_packages()},
                    indent=2,
                )
            )
            return
        from rich.console import Console
        from rich.table import Table

        console = Console()
        table = Table(title="sslkit plugins", title_justify="left")
        for col in ("kind", "name", "plugin", "distribution", "version"):
            table.add_column(col)
        for row in rows:
            table.add_row(*(row[c] or "-" for c in ("kind", "name", "plugin", "distribution", "version")))
        for c in conflicts:  # unusable until one of the plugins is disabled
            for plugin, dist in zip(c["plugins"], c["distributions"], strict=True):
                table.add_row(c["kind"], f"{c['name']} (conflict)", plugin, dist or "-", "-", style="red")
        console.print(table)
        for name, version in optional_packages().items():  # e.g. timm: which backbones exist
            what, install = EXTRAS[name]
            state = f"{name} {version}" if version else f"{name} not installed ({install})"
            console.print(f"{what}: {state}", markup=False, highlight=False)
        for c in conflicts:
            console.print(f"[red]conflict[/]: {c['message']}", markup=True, highlight=False, soft_wrap=True)
        broken = [r for r in plugins.records if r.status != "loaded"]
        for r in broken:
            console.print(
                f"[yellow]{r.status}[/]: plugin '{r.name}' ({r.distribution or '-'} {r.version or ''}) {r.error or ''}"
            )
