"""One data opener: the dispatch "registered name | packed store | folder" lives in
sslkit.data.opener only. (That sslkit.data's imports point down and never form a cycle, lazy
imports included, is checked for the whole package by tests/test_architecture.py.)"""

from __future__ import annotations

from pathlib import Path

import sslkit

ROOT = Path(sslkit.__file__).parent


def test_one_opener():
    """No other module of sslkit.data opens a store from a spec or asks the registry for a dataset."""
    for path in sorted((ROOT / "data").glob("*.py")):
        text = path.read_text(encoding="utf-8")
        if path.name in ("opener.py", "datasets.py"):
            continue
        assert "plugins.datasets" not in text, path.name
        assert "def load_dataset" not in text and "def open_source" not in text, path.name
