"""mkdocs hook: replace ``<!-- cli-reference -->`` with the ``--help`` of every command.

The CLI reference is generated from the typer app itself at build time, so it cannot drift.
"""

from __future__ import annotations

MARKER = "<!-- cli-reference -->"


def _sections(app, command, path: list[str]) -> list[str]:
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, [*path[1:], "--help"], env={"NO_COLOR": "1", "COLUMNS": "100", "TERM": "dumb"})
    if result.exit_code != 0:
        raise RuntimeError(f"{' '.join(path)} --help failed: {result.output}")
    out = [f"## `{' '.join(path)}`", "", "```text", result.output.rstrip(), "```", ""]
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        out += _sections(app, sub, [*path, name])
    return out


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARKER not in markdown:
        return markdown
    import typer

    from sslkit.cli import build_app

    app = build_app()
    return markdown.replace(MARKER, "\n".join(_sections(app, typer.main.get_command(app), ["sslkit"])))
