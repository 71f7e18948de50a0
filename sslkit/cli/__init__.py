"""The ``sslkit`` command line: a thin layer over the Python API.

Errors the user can fix (:class:`sslkit.errors.SSLKitError`) print one line and exit 2. Heavy
modules (torch) are imported inside commands, so ``sslkit --help`` stays fast.
"""

from __future__ import annotations

import logging
import sys
from typing import Optional

import click
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
    return app


def main(argv: list[str] | None = None) -> None:
    app = build_app()
    try:
        code = typer.main.get_command(app).main(args=argv, prog_name="sslkit", standalone_mode=False)
    except SSLKitError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except click.ClickException as exc:  # usage errors: exit 2 with click's message
        exc.show()
        sys.exit(exc.exit_code)
    except (click.Abort, KeyboardInterrupt):
        typer.echo("interrupted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
