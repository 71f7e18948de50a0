"""Keeping tests off the user's cache (imported by conftest.py and by module-scoped fixtures)."""

from __future__ import annotations


def isolate_data_root(tmp_path_factory, monkeypatch) -> None:
    """Point SSLKIT_DATA at the per-session folder (also for module-scoped fixtures, which run
    before the autouse fixture in conftest.py)."""
    monkeypatch.setenv("SSLKIT_DATA", str(tmp_path_factory.getbasetemp() / "sslkit-data"))
    monkeypatch.delenv("SSLKIT_PLUGINS", raising=False)
