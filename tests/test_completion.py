"""The quick TAB (cli/quick_complete.py) answers as typer does, without importing typer."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from isolation import isolate_data_root
from sslkit.cli import build_command
from sslkit.cli.completion import cached_names, store_record
from sslkit.cli.quick_complete import SPEC_FILE, answer, command_spec

LINES = [
    "sslkit ",
    "sslkit tr",
    "sslkit -",
    "sslkit --plugins none tr",
    "sslkit train ",
    "sslkit train ro",
    "sslkit -v train ro",
    "sslkit train rotation+c",
    "sslkit train rotation --set=optim.lr=0.1 --backbone ",
    "sslkit train rotation --",
    "sslkit train rotation --backbone ",
    "sslkit train rotation -b re",
    "sslkit train rotation --set optim.l",
    "sslkit train rotation -s optim.lr=0.1 -s data.",
    "sslkit train rotation --precision ",
    "sslkit train rotation --epochs 3 --",
    "sslkit train rotation --logger ",
    "sslkit train rotation extra ",
    "sslkit data ",
    "sslkit data pack --",
    "sslkit probe run --probe k",
    "sslkit export run --format onn",
    "sslkit reproduce ",
    "sslkit show-batch context --backbone n",
]
# typer answers these itself: the quick path must step aside, not guess
TYPERS_OWN = ["sslkit train -- ", "sslkit train --backbone=", "sslkit nosuch ", "sslkit train --nosuch "]


def _typer_answer(command: object, capsys: pytest.CaptureFixture[str]) -> tuple[str, int]:
    from typer.core import _typer_main_shell_completion

    with pytest.raises(SystemExit) as exit_:
        _typer_main_shell_completion(command, ctx_args={}, prog_name="sslkit", complete_var="_SSLKIT_COMPLETE")
    return capsys.readouterr().out, int(exit_.value.code or 0)


def _quick_answer(capsys: pytest.CaptureFixture[str]) -> tuple[str | None, int]:
    try:
        text = answer()
    except SystemExit as exit_:  # fish's is-args asks by exit code
        return capsys.readouterr().out, int(exit_.code or 0)
    return (None if text is None else text + "\n"), 0


def _set_line(monkeypatch: pytest.MonkeyPatch, shell: str, line: str, fish_action: str = "get-args") -> None:
    monkeypatch.setenv("_SSLKIT_COMPLETE", f"complete_{shell}")
    if shell == "bash":
        monkeypatch.setenv("COMP_WORDS", line)
        monkeypatch.setenv("COMP_CWORD", str(len(line.split()) - (0 if line.endswith(" ") else 1)))
    else:
        monkeypatch.setenv("_TYPER_COMPLETE_ARGS", line)
        monkeypatch.setenv("_TYPER_COMPLETE_FISH_ACTION", fish_action)


@pytest.fixture(scope="module")
def command(tmp_path_factory) -> object:
    with pytest.MonkeyPatch.context() as monkeypatch:
        isolate_data_root(tmp_path_factory, monkeypatch)
        cached_names()  # the slow builds once (as the first TAB does): the quick answers read them
        built = build_command()
        # this process's tree: click orders the -h/--help names by a set, which differs by process
        store_record(SPEC_FILE, command_spec(built))
    return built


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_quick_answers_equal_typers(shell, monkeypatch, capsys, command):
    for line in LINES:
        _set_line(monkeypatch, shell, line)
        quick = _quick_answer(capsys)
        assert quick[0] is not None, f"the quick path stepped aside for {line!r}"
        assert quick == _typer_answer(command, capsys), line
        if shell == "bash" and not line.endswith("extra "):  # a second task: nothing to offer
            assert quick[0].strip(), f"nothing completes {line!r}"


def test_fish_asks_whether_arguments_complete(monkeypatch, capsys, command):
    for line in ("sslkit train ro", "sslkit train rotation --epochs "):
        _set_line(monkeypatch, "fish", line, fish_action="is-args")
        assert _quick_answer(capsys) == _typer_answer(command, capsys), line


def test_quick_path_steps_aside_where_unsure(monkeypatch, command):
    for line in TYPERS_OWN:
        _set_line(monkeypatch, "bash", line)
        assert answer() is None, line
    monkeypatch.setenv("_SSLKIT_COMPLETE", "source_bash")  # the script itself: typer writes it
    assert answer() is None


def test_a_tab_imports_neither_typer_nor_torch(command):
    code = (
        "import sys\nfrom sslkit.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('typer', 'torch', 'click') if m in sys.modules), file=sys.stderr)\n"
    )
    env = {**os.environ, "_SSLKIT_COMPLETE": "complete_bash", "COMP_WORDS": "sslkit train ro", "COMP_CWORD": "2"}
    second = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert second.stdout == "rotation\n"
    assert second.stderr.strip() == "[]"


def test_the_cli_pages_completion_examples_hold():
    """docs/cli.md shows TABs and their answers; each is asked of `sslkit` as bash asks it."""
    page = (Path(__file__).parents[1] / "docs" / "cli.md").read_text()
    block = re.search(r"```console\n(.*?)```", page, re.S)
    assert block is not None
    lines = block.group(1).splitlines()
    asked = [(q[2:].removesuffix("<TAB>"), a.split()) for q, a in zip(lines[::2], lines[1::2], strict=True)]
    assert len(asked) >= 4
    for words, expected in asked:
        env = {**os.environ, "_SSLKIT_COMPLETE": "complete_bash", "COMP_WORDS": words}
        env["COMP_CWORD"] = str(len(words.split()) - 1)
        result = subprocess.run([sys.executable, "-m", "sslkit"], env=env, capture_output=True, text=True, check=True)
        assert result.stdout.split() == expected, words
