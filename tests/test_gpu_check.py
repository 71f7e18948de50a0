"""benchmarks/gpu_check.py on a CPU machine: one JSON file, CUDA recorded as absent, exit 0,
and a failing case recorded without stopping the others."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU the check runs the device cases (minutes)")
def test_cpu_quick_run_writes_one_json(tmp_path):
    out = tmp_path / "check"
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--out",
            str(out),
            "--quick",
            "--cases",
            "environment,cuda_tests,train_nin,torchrun",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [p.name for p in out.iterdir()] == ["gpu_check.json"]
    doc = json.loads((out / "gpu_check.json").read_text())
    assert (
        doc["finished"]
        and doc["cuda"] is False
        and list(doc["cases"]) == ["environment", "cuda_tests", "train_nin", "torchrun"]
    )
    env = doc["cases"]["environment"]
    assert env["status"] == "ok" and env["cuda_available"] is False and env["torch"] == torch.__version__
    assert env["deploy_auto_providers"][0] in env["onnxruntime_providers"]
    tests = doc["cases"]["cuda_tests"]
    assert tests["status"] == "ok" and tests["skipped"] >= 10 and not tests.get("failed")
    for name in ("train_nin", "torchrun"):
        assert doc["cases"][name] == {"status": "skipped", "reason": "no CUDA device", "seconds": 0.0}
    assert "train_nin       skipped" in proc.stdout and "wrote " in proc.stdout


def test_a_failing_case_is_recorded_and_the_rest_run(tmp_path, monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)

    def boom(ctx):
        raise ValueError("the device fell off\nsecond line")

    monkeypatch.setattr(gpu_check, "CASES", [("boom", boom, 10), ("after", lambda ctx: {"figure": 1.5}, 10)])
    monkeypatch.setattr(sys, "argv", ["gpu_check.py", "--out", str(tmp_path), "--cases", "boom,after"])
    assert gpu_check.main() == 0
    doc = json.loads((tmp_path / "gpu_check.json").read_text())
    assert (
        doc["cases"]["boom"]["status"] == "failed"
        and doc["cases"]["boom"]["error"] == "ValueError: the device fell off"
    )
    assert doc["cases"]["after"]["status"] == "ok" and doc["cases"]["after"]["figure"] == 1.5
    assert "1 failed: boom" in capsys.readouterr().out
