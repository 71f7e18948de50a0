"""Every script in examples/ runs (the docs include them, so they must work)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

# notebook.py runs in its own test below, which also reads what it prints
EXAMPLES = sorted(p for p in (Path(__file__).parent.parent / "examples").glob("*.py") if p.name != "notebook.py")


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(script, tmp_path):
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "out")], capture_output=True, text=True, timeout=600, cwd=tmp_path
    )  # examples may write to the current folder
    assert result.returncode == 0, result.stderr[-3000:]


def test_the_notebook_shows_progress_for_train_probe_and_embed(tmp_path):
    """examples/notebook.py, run as a log sees it (output not a terminal): training, the probe's
    feature pass and epochs, and embedding each report progress, from the Python API alone."""
    script = Path(__file__).parent.parent / "examples" / "notebook.py"
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "out")], capture_output=True, text=True, timeout=600, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    for line in ("epoch 1/2 step", "epoch 2/2  loss", "done: held-out pretext accuracy"):  # train
        assert line in log, line
    for line in ("features: train: 300 images", "block2 epoch 3  loss"):  # probe
        assert line in log, line
    assert "embedding: 300 images" in log and "embedded 300 images -> (19,)" in log  # embed
