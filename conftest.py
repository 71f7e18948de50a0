"""Settings for the whole suite (tests/, plugins/ and examples/ alike).

The README runs the suite as `pytest -n 2` (pytest-xdist): two worker processes on a 2-core
machine. Each worker then computes with one thread (and the processes a test starts inherit
that), so the two never fight over the cores; without xdist torch keeps its own default.
"""

from __future__ import annotations

import os

if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"  # for the sslkit / torchrun processes tests start
    os.environ["MKL_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
