"""sslkit's pytest plugin (entry point ``pytest11``): fixtures for plugin authors' tests.

pytest loads this module at start-up in every project of an environment where sslkit is
installed, so it imports nothing heavy: torch and the plugins load only when a test asks for a
fixture.

- ``sslkit_plugins``: the installed plugins, loaded once per session (``sslkit.load_plugins()``).
- ``sslkit_device``: ``"cuda"`` when a GPU is available, else ``"cpu"``.

The checks themselves are plain functions in :mod:`sslkit.testing`.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def sslkit_plugins():
    """Every installed sslkit plugin, loaded through the entry points (as ``sslkit train`` does)."""
    from sslkit.plugins import load_plugins

    return load_plugins()


@pytest.fixture(scope="session")
def sslkit_device() -> str:
    """The device the conformance checks should run on."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
