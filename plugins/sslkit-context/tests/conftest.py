"""Like sslkit's own tests: an isolated data/cache folder and the loaded plugin set."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_data_root(tmp_path_factory, monkeypatch):
    """Never read or write the user's cache (the `sample` data is generated into a temp folder)."""
    root = tmp_path_factory.getbasetemp() / "sslkit-data"
    monkeypatch.setenv("SSLKIT_DATA", str(root))
    monkeypatch.delenv("SSLKIT_PLUGINS", raising=False)


@pytest.fixture(scope="session")
def plugins():
    from sslkit.plugins import load_plugins

    return load_plugins()
