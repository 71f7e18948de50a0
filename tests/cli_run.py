"""Running ``sslkit ARGS`` in the test's own process: the same ``sslkit.cli.main`` the console
script calls, its exit code, stdout and stderr, without paying 5-7 s of interpreter, torch and
plugin start-up per call. Tests that need a real process (a shell limit, torchrun, a TAB, a
traceback check across the interpreter's exit) keep ``subprocess``; test_cli.py runs one bad
input both ways and holds them equal.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from sslkit.cli import main


def run_in_process(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    *args: object,
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``sslkit ARGS`` as a CompletedProcess (returncode, stdout, stderr), run by ``main``."""
    argv = [str(a) for a in args]
    capsys.readouterr()  # what the test printed before is not this command's output
    with monkeypatch.context() as scoped:
        for key, value in (env or {}).items():
            scoped.setenv(key, value)
        if cwd is not None:
            scoped.chdir(Path(cwd))
        try:
            main(argv)
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        out = capsys.readouterr()
    return subprocess.CompletedProcess(["sslkit", *argv], code, out.out, out.err)


CliRunner = Callable[..., subprocess.CompletedProcess[str]]
