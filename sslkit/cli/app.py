"""The typer app behind ``sslkit``: the root options, logging, and every command group.

Kept apart from cli/__init__.py so that a TAB (cli/quick_complete.py) imports no typer.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, TextIO

import typer

from .. import __version__


class _OneLine(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


if TYPE_CHECKING:  # generic in typeshed; subscriptable at run time only from Python 3.11
    _StreamHandler = logging.StreamHandler[TextIO]
else:
    _StreamHandler = logging.StreamHandler


class _StderrHandler(_StreamHandler):
    """Writes to whatever ``sys.stderr`` is at each record (like logging's last-resort handler):
    a stream bound once would outlive a notebook's or a test's replaced stderr."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass


def _setup_logging(verbose: bool) -> None:
    handler = _StderrHandler()
    handler.setFormatter(_OneLine())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO if verbose else logging.WARNING)


def _print_version(value: bool) -> None:
    # Eager: runs while the options are parsed, before the group asks for a command.
    if value:
        typer.echo(f"sslkit {__version__}")
        raise typer.Exit()


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="sslkit",
        help="Self-supervised pretraining with pluggable pretext tasks, backbones and probes.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,  # help texts are plain: "[default: x]" must not be read as markup
        add_completion=True,
        context_settings={"help_option_names": ["-h", "--help"]},
    )

    @app.callback()
    def root(
        ctx: typer.Context,
        plugins: str | None = typer.Option(
            None,
            "--plugins",
            envvar="SSLKIT_PLUGINS",
            help="Comma-separated plugin selection: NAME loads only those, -NAME disables one, 'none' only built-ins.",
        ),
        verbose: bool = typer.Option(False, "--verbose", "-v", help="Print informational messages."),
        version: bool = typer.Option(
            False,
            "--version",
            help="Print the version and exit.",
            is_eager=True,
            callback=_print_version,
        ),
    ) -> None:
        _setup_logging(verbose)
        ctx.obj = {"plugins": plugins}

    # One module per command group; each imports torch only inside its commands.
    from . import (
        data_cmd,
        embed_cmd,
        export_cmd,
        new_plugin_cmd,
        plugins_cmd,
        probe_cmd,
        reproduce_cmd,
        show_cmd,
        train_cmd,
        viz_cmd,
    )

    for module in (  # in workflow order: `sslkit --help` and the docs' reference list them so
        train_cmd,
        show_cmd,
        probe_cmd,
        reproduce_cmd,
        viz_cmd,
        export_cmd,
        embed_cmd,
        data_cmd,
        plugins_cmd,
        new_plugin_cmd,
    ):
        module.register(app)
    return app
