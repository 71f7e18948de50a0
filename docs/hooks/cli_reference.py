"""mkdocs hook: replace ``<!-- cli-reference -->`` with a Markdown reference of every command.

Generated from the command the CLI runs (``sslkit.cli.build_command``) at build time,
so it cannot drift: commands in workflow order, each with its whole description, its usage line
and a table of its arguments and options (value, default, help).
"""

from __future__ import annotations

import html

MARKER = "<!-- cli-reference -->"


def reference_markdown() -> str:
    from sslkit.cli import build_command

    return "\n".join(_sections(build_command(), ["sslkit"]))


def _sections(command, path: list[str]) -> list[str]:
    import typer

    ctx = typer.Context(command, info_name=path[-1])
    name = " ".join(path)
    out = [f"## `{name}`", ""]
    if command.help:
        out += [_paragraphs(command.help), ""]
    usage = " ".join(command.collect_usage_pieces(ctx))
    out += ["```text", f"{name} {usage}", "```", ""]
    rows = [_row(p, ctx) for p in command.params if not getattr(p, "hidden", False)]
    rows = [r for r in rows if r is not None]
    if rows:
        out += ["| argument or option | description |", "|---|---|", *rows, ""]
    for sub_name in command.list_commands(ctx) if hasattr(command, "list_commands") else []:
        out += _sections(command.get_command(ctx, sub_name), [*path, sub_name])
    return out


def _row(param, ctx) -> str | None:
    record = param.get_help_record(ctx)
    if record is None:  # an argument: typer gives them no record when it has no help
        return f"| <code>{_cell(param.human_readable_name)}</code> | |"
    flags, help_text = record
    if param.param_type_name == "argument":
        flags = flags.split(" <", 1)[0]  # typer adds the value type (<str>) to an argument's name
    return f"| <code>{_cell(flags)}</code> | {_cell(help_text)} |"


def _cell(text: str) -> str:
    """One table cell: one line, no Markdown pipes (an entity keeps `a|b` from splitting it)."""
    return html.escape(" ".join(text.split()), quote=False).replace("|", "&#124;")


def _paragraphs(text: str) -> str:
    """A docstring's paragraphs as Markdown paragraphs, each on one line."""
    return "\n\n".join(" ".join(p.split()) for p in text.strip().split("\n\n"))


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, reference_markdown())
