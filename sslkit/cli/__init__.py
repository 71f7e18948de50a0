"""The ``sslkit`` command line: a thin layer over the Python API.

Errors the user can fix (:class:`sslkit.errors.SSLKitError`) print one line and exit 2. Heavy
modules (torch) are imported inside commands, so ``sslkit --help`` stays fast.
"""

from __future__ import annotations

import logging
import sys
from typing import Optional

import typer

from .. import __version__
from ..errors import SSLKitError


class _OneLine(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


def _setup_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLine())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO if verbose else logging.WARNING)


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="sslkit",
        help="Self-supervised pretraining with pluggable pretext tasks, backbones and probes.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,  # help texts are plain: "[default: x]" must not be read as markup
        add_completion=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )

    @app.callback()
    def root(
        ctx: typer.Context,
        plugins: Optional[str] = typer.Option(
            None, "--plugins", envvar="SSLKIT_PLUGINS",
            help="Comma-separated plugin selection: NAME loads only those, -NAME disables one, 'none' only built-ins.",
        ),
        verbose: bool = typer.Option(False, "--verbose", "-v", help="Print informational messages."),
        version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True),
    ) -> None:
        if version:
            typer.echo(f"sslkit {__version__}")
            raise typer.Exit()
        _setup_logging(verbose)
        ctx.obj = {"plugins": plugins}

    # One module per command group; each imports torch only inside its commands.
    from . import (
        embed_cmd, export_cmd, new_plugin_cmd, plugins_cmd, probe_cmd, reproduce_cmd, show_cmd, train_cmd, viz_cmd,
    )

    for module in (train_cmd, plugins_cmd, show_cmd, probe_cmd, reproduce_cmd, viz_cmd, export_cmd, embed_cmd, new_plugin_cmd):
        module.register(app)
    return app


def main(argv: list[str] | None = None) -> None:
    """Run the CLI. Usage errors are typer's (exit 2); errors the user can fix are one line, exit 2."""
    app = build_app()
    try:
        app(args=argv, prog_name="sslkit")  # standalone: exits itself on success and usage errors
    except SSLKitError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
