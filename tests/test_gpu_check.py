"""benchmarks/gpu_check.py without a GPU: CUDA recorded as absent (exit 0, seconds), limits that fit
the budget, and the runner's guarantees under faults: a case that hangs is killed with its whole
process group within its limit, its partial output and figures are kept, later cases still run,
and the JSON on disk always holds what finished."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("gpu_check", None)


def _ctx(tmp_path: Path) -> dict:
    return {"cuda": True, "gpu_count": 1, "quick": True, "steps": 1, "paper_images": 1, "out": str(tmp_path), "env": {}}


def _alive(pid: int) -> bool:
    """Running or sleeping: a zombie waiting for its reaper is dead for the GPU's purposes."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU the check runs the device cases (minutes)")
def test_cpu_quick_run_records_cuda_absent_and_exits_0(tmp_path):
    out = tmp_path / "check"
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert time.monotonic() - t0 < 60  # one environment probe, nothing else
    assert sorted(p.name for p in out.iterdir()) == ["gpu_check.json", "inductor-cache"]
    assert (out / "inductor-cache" / ".gitignore").read_text() == "*\n"
    doc = json.loads((out / "gpu_check.json").read_text())
    assert doc["finished"] and doc["cuda"] is False and doc["skipped_for_time"] == [] and doc["verdict"] is None
    env = doc["cases"]["environment"]
    assert env["status"] == "ok" and env["cuda_available"] is False and env["torch"] == torch.__version__
    assert env["deploy_auto_providers"][0] in env["onnxruntime_providers"] and "c_compiler" in env
    others = {name: r for name, r in doc["cases"].items() if name != "environment"}
    assert len(others) >= 12 and all(
        r["status"] == "skipped" and r["reason"] == "no CUDA device" for r in others.values()
    )
    assert "CUDA absent" in proc.stdout and "paper preset: not measured here" in proc.stdout


def test_case_limits_fit_the_default_budget_inside_one_device_call(gpu_check):
    limits = [case.limit_s for case in gpu_check.CASES]
    assert sum(limits) <= gpu_check.DEFAULT_BUDGET_S <= 600 - 45  # room for start-up and copying back
    names = [case.name for case in gpu_check.CASES]
    assert names[:4] == ["environment", "cuda_tests", "train_nin", "paper_epoch"]  # most valuable first
    assert len(set(names)) == len(names) and all(limit > 0 for limit in limits)


HANGS_WITH_A_GRANDCHILD = textwrap.dedent("""
    import json, os, signal, subprocess, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # only SIGKILL ends it
    deaf = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
    child = subprocess.Popen([sys.executable, "-c", deaf])
    print(f"grandchild {child.pid}", flush=True)
    print("half-way figures", flush=True)
    with open(os.environ["GPU_CHECK_RESULT"], "w") as f:
        json.dump({"first_figure": 1.5}, f)
    time.sleep(600)
""")


def test_a_hanging_case_is_killed_with_its_children_and_the_rest_run(gpu_check, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(gpu_check, "GRACE_S", 0.5)
    hang = gpu_check.Case("hang", 2.0, argv=lambda ctx: [sys.executable, "-c", HANGS_WITH_A_GRANDCHILD], needs="none")
    after = gpu_check.Case("after", 10.0, argv=lambda ctx: [sys.executable, "-c", "print('still ran')"], needs="none")
    t0 = time.monotonic()
    check = gpu_check.run_check([hang, after], tmp_path, 20.0, _ctx(tmp_path), quiet=True)
    assert time.monotonic() - t0 < 2.0 + 0.5 + 10  # the limit, the grace, the second case
    doc = json.loads((tmp_path / "gpu_check.json").read_text())
    assert doc == json.loads(json.dumps(check.doc)) and doc["finished"]
    hung = doc["cases"]["hang"]
    assert hung["status"] == "timeout" and "limit of 2 s" in hung["error"] and hung["seconds"] < 2.0 + 0.5 + 2
    assert "half-way figures" in hung["stdout_tail"] and hung["first_figure"] == 1.5  # partial output kept
    grandchild = int(hung["stdout_tail"].split("grandchild ")[1].split()[0])
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild)
    assert doc["cases"]["after"]["status"] == "ok" and "still ran" in doc["cases"]["after"]["stdout_tail"]


def test_a_failing_case_is_recorded_and_a_case_over_the_budget_is_skipped(gpu_check, tmp_path):
    boom = gpu_check.Case("boom", 10.0, argv=lambda ctx: [sys.executable, "-c", "raise SystemExit('device fell off')"])
    big = gpu_check.Case("big", 100.0, argv=lambda ctx: [sys.executable, "-c", "pass"], needs="none")
    two = gpu_check.Case("two_gpus", 1.0, argv=lambda ctx: [sys.executable, "-c", "pass"], needs="2gpu")
    gpu_check.run_check([boom, big, two], tmp_path, 30.0, _ctx(tmp_path), quiet=True)
    doc = json.loads((tmp_path / "gpu_check.json").read_text())
    assert doc["cases"]["boom"]["status"] == "failed" and doc["cases"]["boom"]["error"] == "exit 1: device fell off"
    assert doc["cases"]["big"]["status"] == "skipped" and doc["cases"]["big"]["reason"].startswith("time budget")
    assert doc["skipped_for_time"] == ["big"]
    assert doc["cases"]["two_gpus"] == {
        "status": "skipped",
        "reason": "1 GPU here: the 2-process NCCL / DDP / SyncBatchNorm case needs 2",
        "seconds": 0.0,
        "limit_s": 1.0,
    }


def test_the_json_on_disk_holds_a_running_case_s_figures(gpu_check, tmp_path, monkeypatch):
    """A kill of the whole check (the device call's own limit) loses nothing a case already measured."""
    writes = textwrap.dedent("""
        import json, os, time
        with open(os.environ["GPU_CHECK_RESULT"] + ".tmp", "w") as f:
            json.dump({"results": {"ceiling": {"images_per_s": 123.0}}}, f)
        os.replace(os.environ["GPU_CHECK_RESULT"] + ".tmp", os.environ["GPU_CHECK_RESULT"])
        time.sleep(600)
    """)
    seen: list[dict] = []
    real_save = gpu_check.Check.save

    def save(self):
        real_save(self)
        seen.append(json.loads(self.path.read_text()))

    monkeypatch.setattr(gpu_check.Check, "save", save)
    monkeypatch.setattr(gpu_check, "GRACE_S", 0.2)
    case = gpu_check.Case("slow", 2.0, argv=lambda ctx: [sys.executable, "-c", writes], needs="none")
    gpu_check.run_check([case], tmp_path, 10.0, _ctx(tmp_path), quiet=True)
    running = [d["cases"]["slow"] for d in seen if d["cases"].get("slow", {}).get("status") == "running"]
    assert running and running[0]["results"]["ceiling"]["images_per_s"] == 123.0


def test_verdict_names_the_largest_gap(gpu_check):
    doc = {
        "cases": {
            "paper_epoch": {
                "projected_100_epochs_s": 400.0,
                "warm_epoch_s": 3.5,
                "warm_train_s": 3.0,
                "first_epoch_s": 50.0,
                "images": 50_000,
            },
            "train_nin": {
                "results": {"sslkit_bf16_compile": {"images_per_s": 16_000}, "ceiling_bf16": {"images_per_s": 20_000}}
            },
            "step_profile": {"gflop_per_step": 755.0, "batch_images": 128, "bf16_matmul_tflops_measured": 800.0},
        }
    }
    v = gpu_check.verdict(doc)
    assert v["meets_goal"] is False and v["over_goal_s"] == 220.0
    assert v["gaps_s"]["training loop vs the bare model step (bf16)"] == pytest.approx(62.5, abs=0.1)
    assert v["largest_gap"].startswith("model step vs the bf16 matmul peak")
    assert gpu_check.verdict({"cases": {}}) is None


def test_a_failed_environment_skips_the_rest_with_its_reason(gpu_check, tmp_path):
    """sslkit not installed in the device's python: one clear reason, not a dozen identical failures."""
    env = gpu_check.Case("environment", 5.0, argv=lambda ctx: [sys.executable, "-c", "raise SystemExit('no sslkit')"])
    rest = gpu_check.Case("train_nin", 5.0, argv=lambda ctx: [sys.executable, "-c", "pass"])
    gpu_check.run_check([env, rest], tmp_path, 20.0, _ctx(tmp_path), quiet=True)
    doc = json.loads((tmp_path / "gpu_check.json").read_text())
    assert doc["cases"]["environment"]["status"] == "failed"
    assert doc["cases"]["train_nin"]["reason"] == "the environment case failed: exit 1: no sslkit"
