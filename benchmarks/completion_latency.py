"""How long one TAB takes: ``sslkit train ro<TAB>`` (names from the cached list) beside a bare
``python -c pass`` and beside the list rebuilt from the plugins (the first TAB after a plugin
changes), medians of several runs measured side by side.

    python benchmarks/completion_latency.py [--runs 7]

Target (issue 23): well under 0.3 s per TAB on 2 idle cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = "sslkit train ro"


def _seconds(cmd: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as root:
        env = {**os.environ, "SSLKIT_DATA": root}
        tab = {**env, "_SSLKIT_COMPLETE": "complete_bash", "COMP_WORDS": WORDS, "COMP_CWORD": "2"}
        complete = [sys.executable, "-m", "sslkit"]
        cold, bare, warm = [], [], []
        for _ in range(runs):
            (Path(root) / "completion.json").unlink(missing_ok=True)
            cold.append(_seconds(complete, tab))  # rebuilds the list: loads every plugin
            warm.append(_seconds(complete, tab))  # reads the cached list
            bare.append(_seconds([sys.executable, "-c", "pass"], env))
    b, w, c = (statistics.median(x) for x in (bare, warm, cold))
    print(f"python -c pass          {b:.3f} s")
    print(f"TAB, cached names       {w:.3f} s  ({w / b:.1f}x python's start)")
    print(f"TAB, list rebuilt       {c:.3f} s  ({c / w:.1f}x the cached TAB)")


if __name__ == "__main__":
    main()
