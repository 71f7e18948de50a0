"""Lint, format and type checks as part of the test suite (so CI runs them).

The tools read their settings from pyproject.toml ([tool.ruff] with its include list, [tool.mypy]
with its files list), so these tests and a developer's plain ``ruff check`` / ``mypy`` agree.
Each test is skipped when its tool is not installed (``pip install -e ".[test]"`` has both).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(tool: str, *args: str) -> None:
    if importlib.util.find_spec(tool) is None:
        pytest.skip(f"{tool} is not installed (pip install -e '.[test]')")
    proc = subprocess.run([sys.executable, "-m", tool, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{tool} {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"


def test_ruff_check():
    _run("ruff", "check", "--no-cache", "--output-format", "concise")


def test_ruff_format():
    _run("ruff", "format", "--check", "--no-cache")


@pytest.mark.slow
def test_mypy():
    # The default cache (.mypy_cache, git-ignored) makes a re-run take about a second; a cold one ~30 s.
    _run("mypy")
