"""The documentation site builds in strict mode: every snippet path exists, every API reference
resolves, and the CLI and configuration references are generated from the code."""

from __future__ import annotations

import html
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("docs") / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return out


def _text(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", fragment))


def test_mkdocs_build_strict(site):
    cli = (site / "cli" / "index.html").read_text()
    assert "sslkit train" in cli and "--backbone" in cli


def test_every_image_of_every_page_exists_and_the_sitemap_has_urls(site):
    """No broken picture on any page; with site_url set the sitemap lists absolute addresses."""
    missing, count = [], 0
    for page in site.rglob("*.html"):
        for src in re.findall(r'<img[^>]+src="([^"]+)"', page.read_text()):
            if src.startswith(("http://", "https://", "data:")):
                continue
            count += 1
            if not (page.parent / src.split("#")[0]).resolve().is_file():
                missing.append(f"{page.relative_to(site)}: {src}")
    assert not missing, missing
    assert count >= 6
    for name in ("batch-rotation", "batch-context", "filters", "curves", "attention", "neighbors"):
        with Image.open(site / "generated" / f"{name}.png") as picture:  # drawn by the build
            assert min(picture.size) > 40, name
    sitemap = (site / "sitemap.xml").read_text()
    assert "<loc>https://" in sitemap and "cli/" in sitemap


def test_getting_started_shows_the_readme_commands_without_fences(site):
    """The first code block is the README's commands: no stray fence line, no line that hides
    behind a scroll bar, and the shell reads the wrapped lines as the README's one-liners."""
    page = (site / "index.html").read_text()
    first = _text(re.search(r"<pre[^>]*>(.*?)</pre>", page, re.S).group(1))
    lines = first.strip("\n").splitlines()
    assert not [line for line in lines if line.lstrip().startswith("```")], lines
    assert max(len(line) for line in lines) <= 80, lines
    readme = (ROOT / "README.md").read_text().split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [line for line in readme.splitlines() if line.strip()]
    joined = first.replace(" \\\n", " ").strip().splitlines()
    assert [shlex.split(c) for c in joined] == [shlex.split(c) for c in commands]


def _keys(model, prefix=""):
    """(dotted key, default as shown) for every field of a pydantic model, sections flattened."""
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
            yield from _keys(annotation, f"{prefix}{name}.")
        else:
            default = (
                "required"
                if field.is_required()
                else json.dumps(_six_digits(field.get_default(call_default_factory=True)), default=str)
            )
            yield f"{prefix}{name}", default


def _six_digits(value):
    """Defaults as the page shows them: floats at 6 significant digits (no 1.3333333333333333)."""
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, (list, tuple)):
        return [_six_digits(v) for v in value]
    return value


def test_configuration_page_lists_every_key_with_type_and_default(site):
    from sslkit.config import RunConfig

    page = (site / "configuration" / "index.html").read_text()
    rows = {}
    for row in re.findall(r"<tr>(.*?)</tr>", page, re.S):
        cells = [_text(c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        if cells:
            rows.setdefault(cells[0], cells)
    keys = list(_keys(RunConfig))
    assert len(keys) > 20
    for key, default in keys:
        assert key in rows, f"configuration page lacks '{key}'"
        _, kind, shown, _ = rows[key]
        assert kind, key
        assert shown == default, (key, shown, default)
    assert rows["data.batch_size"][1] == "int (≥ 1, ≤ 65536)" and rows["optim.name"][1] == '"sgd" or "adamw" or "lars"'
    assert rows["data.batch_size"][3].startswith("images per step")
    assert rows["data.crop_ratio"][2] == "[0.75, 1.33333]"
    assert not [key for key, cells in rows.items() if len(cells) == 4 and not cells[3].strip()], (
        "keys without a description"
    )
    assert "timm/<model>" in _text(page) or "timm" not in _text(page)
    # each first-party task's and backbone's own options
    for key in ("task.angles", "task.patch_size", "backbone.blocks", "backbone.small_stem"):
        assert key in rows, key


def test_cli_page_lists_every_command_with_its_full_description(site):
    """The CLI reference is Markdown generated from the command the CLI runs: every command and
    subcommand, in workflow order, with its whole description (not click's 45-character cut)."""
    from sslkit.cli import build_command

    page = " ".join(_text((site / "cli" / "index.html").read_text()).split())
    seen = []

    def walk(command, path):
        for name, sub in command.commands.items():
            full = f"{path} {name}"
            assert full in page, f"the CLI page lacks '{full}'"
            description = " ".join((sub.help or "").split())
            assert description and description in page, f"'{full}': description not whole"
            seen.append(page.index(full))
            if hasattr(sub, "commands"):
                walk(sub, full)

    walk(build_command(), "sslkit")
    assert page.index("sslkit train") < page.index("sslkit probe") < page.index("sslkit plugins")
    assert "&lt;str&gt;" not in page and "<str>" not in page


def test_navigation_lists_the_pages(site):
    nav = (site / "index.html").read_text()
    for page in ("tasks/context/", "backbones/", "api/"):
        assert f'href="{page}"' in nav, page
    if (ROOT / "docs" / "deploy.md").exists():
        assert 'href="deploy/"' in nav
    context = _text((site / "tasks" / "context" / "index.html").read_text())
    assert "(-1,-1)" in context and "task.chromatic" in context and "stl" in context


@pytest.mark.parametrize("page", ["backbones.md", "tasks/context.md", "combining-tasks.md"])
def test_python_examples_run(page, tmp_path):
    """The page's Python blocks are executed as written (each in a fresh interpreter)."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / page).read_text(), re.S)
    assert blocks
    for block in blocks:
        result = subprocess.run(
            [sys.executable, "-c", block], capture_output=True, text=True, cwd=tmp_path, timeout=300
        )
        assert result.returncode == 0, block[:300] + "\n" + result.stderr[-3000:]


def test_code_blocks_are_closed_and_keep_comments_on_their_own_lines():
    """A fence line is ``` or ```lang (text after a closing fence swallows the page into the
    block), and no code line ends in a comment: the copy button sits over the right end of a
    block's lines, and a comment above the line it explains reads whole."""
    trailing = re.compile(r"\S\s{2,}#\s")
    for page in sorted((ROOT / "docs").rglob("*.md")):
        in_block = False
        for number, line in enumerate(page.read_text().splitlines(), 1):
            where = f"{page.relative_to(ROOT)}:{number}"
            if line.lstrip().startswith("```"):
                assert re.fullmatch(r"\s*```[\w-]*", line), f"{where}: text after a fence: {line!r}"
                in_block = not in_block
            elif in_block:
                assert not trailing.search(line), f"{where}: move the comment above the line: {line!r}"
        assert not in_block, f"{page.relative_to(ROOT)}: a code block is never closed"
