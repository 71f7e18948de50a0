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

    from . import plugins_cmd, train_cmd

    train_cmd.register(app)
    plugins_cmd.register(app)
    from . import show_cmd; show_cmd.register(app)  # noqa: E702
    from . import probe_cmd; probe_cmd.register(app)  # noqa: E702
    from . import reproduce_cmd; reproduce_cmd.register(app)  # noqa: E702
    from . import viz_cmd; viz_cmd.register(app)  # noqa: E702
    from . import embed_cmd, export_cmd; export_cmd.register(app); embed_cmd.register(app)  # noqa: E702
    return app


def main(argv: list[str] | None = None) -> None:
    """Run the CLI. Usage errors are typer's (exit 2); errors the user can fix are one line, exit 2."""
    app = build_app()
    try:
        app(args=argv, prog_name="sslkit")  # standalone: exits itself on success and usage errors
    except SSLKitError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
