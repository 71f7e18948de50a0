"""Shared fixtures: an isolated data/cache folder and the loaded plugin set."""

from __future__ import annotations

import pytest

from isolation import isolate_data_root


@pytest.fixture(autouse=True)
def _isolated_data_root(tmp_path_factory, monkeypatch):
    """Tests never read or write the user's cache: SSLKIT_DATA points at a per-session folder."""
    isolate_data_root(tmp_path_factory, monkeypatch)


@pytest.fixture(scope="session")
def plugins():
    from sslkit.plugins import load_plugins

    return load_plugins()


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` need an NVIDIA GPU that torch can use: skipped, with the reason, without one."""
    marked = [item for item in items if item.get_closest_marker("cuda")]
    if not marked:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    for item in marked:
        item.add_marker(skip)


@pytest.fixture
def cli(capsys, monkeypatch):
    """``cli("train", "rotation", ...)``: sslkit's CLI run in this process (tests/cli_run.py)."""
    from cli_run import run_in_process

    return lambda *args, env=None, cwd=None: run_in_process(capsys, monkeypatch, *args, env=env, cwd=cwd)
