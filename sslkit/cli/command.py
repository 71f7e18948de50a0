"""The click command behind ``sslkit``: typer's app, given readable help.

typer 0.29 names value types in help as ``<str>``, ``<list[str]>`` or ``<int range>`` (arguments
too: ``TASK <str>``) and lets click cut each command's summary in ``sslkit --help`` at 45
characters. Here every option whose metavar is unset gets its long name (``--device DEVICE``,
argparse's convention; ``--set KEY=VALUE``; choices as ``[fp32|bf16]``), every argument its name
alone, and every command's summary is its help's first sentence, whole.
The CLI (``main``), the docs' CLI reference and the tests all read this one command, built by
:func:`sslkit.cli.build_command`.
"""

from __future__ import annotations

import re
from typing import Any

import typer

# Options whose name alone would not say what the value looks like.
METAVARS = {"set": "KEY=VALUE", "sets": "KEY=VALUE"}


def command_of(app: typer.Typer) -> Any:
    """The click command of ``app``, polished (see the module's docstring)."""
    command = typer.main.get_command(app)
    polish(command)
    return command


def polish(command: Any) -> None:
    """Readable metavars and whole summaries, recursively (see the module's docstring)."""
    for param in command.params:
        if param.metavar is None and not getattr(param, "is_flag", False) and not getattr(param, "count", False):
            param.metavar = _metavar(param)
        if param.param_type_name == "argument":  # "TASK", not "TASK <str>": the help says what it is
            param.display_type_rich = _no_type
    if command.help and not command.short_help:
        command.short_help = first_sentence(command.help)
    for sub in getattr(command, "commands", {}).values():
        polish(sub)


def _no_type(ctx: Any = None) -> None:
    return None


def _metavar(param: Any) -> str:
    if param.type_descriptor.is_choice:  # typer draws choices as <a|b>
        return "[" + param.display_type(None).strip("<>") + "]"
    name = param.name or "value"
    long = [o for o in getattr(param, "opts", []) if o.startswith("--")]
    return METAVARS.get(name) or (long[0][2:] if long else name).replace("-", "_").upper()


def first_sentence(text: str) -> str:
    """The help's first sentence (up to '. ' or the first blank line), on one line."""
    paragraph = text.strip().split("\n\n", 1)[0]
    one_line = " ".join(paragraph.split())
    match = re.search(r"(?<=[a-z0-9)'`])\.\s", one_line + " ")
    return one_line[: match.start() + 1] if match else one_line
