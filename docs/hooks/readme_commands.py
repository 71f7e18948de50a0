"""mkdocs hook: replace ``<!-- readme-commands -->`` with the README's first ``bash`` block.

The Getting started page shows the same two commands as the README (and ``.ci/run``), taken from
the README at build time so they cannot drift, without the README's fence lines, and wrapped
with ``\\`` continuations so that no line hides behind a horizontal scroll bar.
"""

from __future__ import annotations

from pathlib import Path

MARKER = "<!-- readme-commands -->"
WIDTH = 72  # characters that fit a code block of the material theme without scrolling


def first_bash_block(readme: str) -> list[str]:
    lines = readme.splitlines()
    start = lines.index("```bash") + 1  # ValueError: the README lost its commands
    return lines[start : lines.index("```", start)]


def _units(segment: str) -> list[str]:
    """Words grouped so that an option keeps its value: ['pip install', '-e .', ...]."""
    units: list[str] = []
    for word in segment.split():
        if units and not word.startswith("-"):
            units[-1] += " " + word
        else:
            units.append(word)
    return units


def wrap(command: str, width: int = WIDTH) -> list[str]:
    """One shell command as lines of at most ``width`` characters where it can (an option with
    its value is never split), each ``&&`` step on its own line, joined by `` \\`` continuations:
    the shell reads it exactly as the one-line form."""
    out: list[str] = []
    steps = command.split(" && ")
    for i, step in enumerate(steps):
        line = ""
        tail = " && \\" if i < len(steps) - 1 else ""
        for unit in _units(step):
            candidate = f"{line} {unit}" if line else unit
            if line and len(candidate) + len(" \\") > width:
                out.append(line + " \\")
                line = "    " + unit
            else:
                line = candidate
        out.append(line + tail)
    return out


def render(readme: str) -> str:
    body = [wrapped for command in first_bash_block(readme) for wrapped in wrap(command)]
    return "\n".join(["```bash", *body, "```"])


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARKER not in markdown:
        return markdown
    readme = (Path(config["docs_dir"]).parent / "README.md").read_text(encoding="utf-8")
    return markdown.replace(MARKER, render(readme))
