"""Check and measure sslkit on a GPU in one command: ONE JSON file in --out and a printed table.

    timeout 540 python benchmarks/gpu_check.py --out benchmarks/results          # ~7 min on one GPU
    python benchmarks/gpu_check.py --out /tmp/check --quick                      # CPU: ~30 s

Writes ``OUT/gpu_check.json`` (rewritten after every case, so a run cut short still leaves what
it measured): ``{"finished": bool, "seconds": s, "cuda": bool, "cases": {name: {"status":
"ok"|"failed"|"skipped", "seconds": s, ...figures... | "error": one line}}}``. Every case is
guarded: one that fails is recorded with its error and the rest still run; the exit status is 0
unless the check itself could not run.

Cases, in order of importance (a case that would not fit the --budget is skipped and recorded):

  environment      GPU, driver, torch / CUDA / cuDNN versions, onnxruntime build, its available
                   providers and the provider ``sslkit.deploy`` really starts in auto mode
  cuda_tests       ``pytest -m cuda -q tests/test_cuda.py`` in a subprocess: pass/fail/skip counts
  train_nin        NIN-4, batch 128 (x4 rotations): benchmarks/train_throughput.py --device cuda,
                   fp32 / bf16 / bf16+compile / NCHW against the compute ceiling (fp32 and bf16)
  rotation_paper   the first 2 epochs of rotation's ``paper`` preset on 50,000 generated 32 px
                   images (CIFAR-10 sized), extrapolated to the preset's 100 epochs
  inference        benchmarks/inference.py --device cuda: onnxruntime CUDA fp32 / fp16 / IO
                   binding vs PyTorch eager on CUDA, for the exported NIN encoder
  torchrun         ``torchrun --standalone --nproc_per_node 1 -m sslkit train rotation`` on CUDA
                   (a one-process launch: the torchrun path, not a multi-GPU all-reduce; the NCCL
                   group itself is exercised by tests/test_cuda.py)
  train_resnet18   ResNet-18 at 32 px and AlexNet at 96 px (their input sizes), fp32 and bf16
  train_alexnet    against the ceiling
  gpu_decode       benchmarks/data_scale.py's GPU (nvJPEG) vs CPU decode of a packed JPEG store

Without CUDA, the device cases are recorded as skipped (``cuda: false``) and only the CPU side
runs: environment, the cuda tests' skip count, and with --quick a small CPU inference run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"


class Skip(Exception):
    """A case that does not apply here (recorded as skipped, with the reason)."""


def _run(cmd: list[str], timeout: float, **kw: Any) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, **kw)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"timed out after {timeout:.0f} s: {' '.join(cmd[:6])} ...") from None


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def _checked(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    if proc.returncode:
        raise RuntimeError(f"exit {proc.returncode}: {_last_line(proc.stderr) or _last_line(proc.stdout)}")
    return proc


# ---------------------------------------------------------------------------------------------
# Cases


def environment(ctx: dict) -> dict:
    import onnx
    import onnxruntime as ort
    import torch

    from sslkit import deploy

    out: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "onnxruntime": ort.__version__,
        "onnxruntime_providers": ort.get_available_providers(),
        "onnxruntime_build_cuda": getattr(getattr(ort.capi, "build_and_package_info", None), "cuda_version", None),
        "onnxruntime_gpu_dist": deploy._installed("onnxruntime-gpu"),
        "onnxruntime_cpu_dist": deploy._installed("onnxruntime"),
        "onnxruntime_problem": deploy.gpu_build_problem(),
        "nvidia_device_present": deploy.cuda_device_present(),
        "tensorrt_present": deploy.tensorrt_present(),
    }
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        out.update(
            gpu=p.name,
            gpu_count=torch.cuda.device_count(),
            capability=f"{p.major}.{p.minor}",
            gpu_memory_gib=round(p.total_memory / 2**30, 1),
            bf16=torch.cuda.is_bf16_supported(),
        )
    smi = shutil.which("nvidia-smi")
    if smi:
        q = _run([smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"], 30)
        out["nvidia_smi"] = q.stdout.strip() or _last_line(q.stderr)
    # The provider sslkit.deploy really starts in auto mode, on a one-node model (no export needed).
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
    )
    path = Path(ctx["tmp"]) / "relu.onnx"
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)], ir_version=10), path)
    _, report = deploy.start_session(path)
    out.update(
        deploy_auto_providers=list(report.providers), deploy_auto_fallback=report.fallback, deploy_auto_note=report.note
    )
    return out


def cuda_tests(ctx: dict) -> dict:
    proc = _run(
        [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", "tests/test_cuda.py"],
        ctx["timeout"],
    )
    summary = _last_line(proc.stdout)
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", summary)}
    failed = [ln.split(" ", 1)[1][:200] for ln in proc.stdout.splitlines() if ln.startswith(("FAILED ", "ERROR "))]
    out = {"summary": summary, "exit": proc.returncode, **counts, "failures": failed}
    if proc.returncode not in (0, 5) or counts.get("failed") or counts.get("error") or counts.get("errors"):
        out["error"] = f"{len(failed)} failed: " + "; ".join(failed)[:500]
    return out


def _throughput(ctx: dict, *args: str) -> dict:
    with tempfile.TemporaryDirectory(dir=ctx["tmp"]) as d:
        js = Path(d) / "t.json"
        proc = _run(
            [sys.executable, str(BENCH / "train_throughput.py"), "--device", "cuda", *args, "--json", str(js)],
            ctx["timeout"],
        )
        if not js.is_file():
            _checked(proc)
            raise RuntimeError("train_throughput.py wrote no JSON")
        data = json.loads(js.read_text())
    out = {"results": data["results"], "ratios": data["ratios"]}
    errors = {k: v["error"] for k, v in data["results"].items() if "error" in v}
    if errors:
        out["error"] = "; ".join(f"{k}: {v}" for k, v in errors.items())[:500]
    return out


def _need_cuda(ctx: dict) -> None:
    if not ctx["cuda"]:
        raise Skip("no CUDA device")


def _train_case(*args: str):
    """A case: benchmarks/train_throughput.py on CUDA with these arguments (and --steps)."""

    def case(ctx: dict) -> dict:
        _need_cuda(ctx)
        return _throughput(ctx, *args, "--steps", str(ctx["steps"]))

    return case


train_nin = _train_case("--cases", "ceiling,ceiling_bf16,sslkit,sslkit_bf16,sslkit_bf16_compile,sslkit_nchw")
train_resnet18 = _train_case(
    "--backbone", "resnet18", "--image-size", "32", "--cases", "ceiling,ceiling_bf16,sslkit,sslkit_bf16"
)
train_alexnet = _train_case(
    "--backbone", "alexnet", "--image-size", "96", "--cases", "ceiling,ceiling_bf16,sslkit,sslkit_bf16"
)


PAPER_EPOCH = r"""
import json, sys, tempfile, torch
from sslkit.config import assemble
from sslkit.data.datasets import ImageData
from sslkit.engine.trainer import train
from sslkit.hookspecs import hookimpl
from sslkit.plugins import load_plugins

N, DEVICE, EXTRA = int(sys.argv[1]), sys.argv[2], sys.argv[3:]

def load(split, root):  # CIFAR-10 sized random images: speed does not depend on the pixels
    g = torch.Generator().manual_seed(0)
    return ImageData(torch.randint(0, 256, (N, 3, 32, 32), dtype=torch.uint8, generator=g), None, [], f"random {N}")

class Generated:
    @hookimpl
    def register_datasets(self, register):
        register("gpucheck-random", load)

plugins = load_plugins(extra=[Generated()])
cfg = assemble(
    "rotation",
    plugins,
    preset="paper",
    sets=["data.name=gpucheck-random", *EXTRA],
    flags={"epochs": 2, "device": DEVICE},
)
with tempfile.TemporaryDirectory() as out:
    history = train(cfg, out, plugins=plugins).history
print("RESULT " + json.dumps({"epochs_run": len(history), "history": history, "preset_epochs": 100}))
"""


def rotation_paper(ctx: dict) -> dict:
    _need_cuda(ctx)
    proc = _checked(_run([sys.executable, "-c", PAPER_EPOCH, str(ctx["paper_images"]), "cuda"], ctx["timeout"]))
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    result = json.loads(line[-1][7:])
    first, warm = result["history"][0], result["history"][-1]
    total = first["seconds"] + (result["preset_epochs"] - 1) * warm["seconds"]
    return {
        "images": ctx["paper_images"],
        "first_epoch_s": first["seconds"],
        "warm_epoch_s": warm["seconds"],
        "warm_images_per_s": warm["images_per_s"],
        "extrapolated_100_epochs_min": total / 60,
        "note": "training steps only (held-out evaluation and checkpoints add a little); first + 99 x warm epoch",
    }


def inference(ctx: dict) -> dict:
    with tempfile.TemporaryDirectory(dir=ctx["tmp"]) as d:
        js = Path(d) / "i.json"
        if ctx["cuda"]:
            cmd = ["--device", "cuda", "--images", "16384", "--batch", "256", "--json", str(js)]
        elif ctx["quick"]:
            cmd = ["--width", "0.1", "--images", "128", "--batch", "64", "--threads", "2"]
        else:
            cmd = ["--images", "2048"]
        proc = _checked(_run([sys.executable, str(BENCH / "inference.py"), *cmd], ctx["timeout"]))
        if js.is_file():
            return json.loads(js.read_text())
    rows = {
        m.group(1).strip(): float(m.group(2))
        for m in re.finditer(
            r"^(pytorch eager fp32|onnxruntime cpu|opencv dnn \S+)\s+(\d+) images/s", proc.stdout, re.M
        )
    }
    return {"device": "cpu", "images_per_s": rows, "output": proc.stdout.strip().splitlines()[-4:]}


def torchrun(ctx: dict) -> dict:
    _need_cuda(ctx)
    exe = shutil.which("torchrun")
    cmd = [exe] if exe else [sys.executable, "-m", "torch.distributed.run"]
    with tempfile.TemporaryDirectory(dir=ctx["tmp"]) as d:
        out = Path(d) / "run"
        proc = _checked(
            _run(
                [
                    *cmd,
                    "--standalone",
                    "--nproc_per_node",
                    "1",
                    "-m",
                    "sslkit",
                    "train",
                    "rotation",
                    "--device",
                    "cuda",
                    "--epochs",
                    "1",
                    "--set",
                    "data.subset=2048",
                    "--set",
                    "backbone.width=0.25",
                    "--out",
                    str(out),
                ],
                ctx["timeout"],
            )
        )
        rows = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
        if not (out / "checkpoint.pt").is_file():
            raise RuntimeError("torchrun run wrote no checkpoint.pt")
    return {
        "epochs": len(rows),
        "train_loss": rows[-1].get("train_loss"),
        "images_per_s": rows[-1].get("images_per_s"),
        "stderr_tail": _last_line(proc.stderr),
    }


def gpu_decode(ctx: dict) -> dict:
    _need_cuda(ctx)
    script = BENCH / "data_scale.py"
    if not script.is_file():
        raise Skip("benchmarks/data_scale.py is not in this checkout")
    n, workers = "300", str(min(8, os.cpu_count() or 1))
    with tempfile.TemporaryDirectory(dir=ctx["tmp"]) as d:
        base = [sys.executable, str(script), "--work", d, "--workers", workers, "--n", n, "--case"]
        jpeg = json.loads(_checked(_run([*base, "jpeg_read"], ctx["timeout"])).stdout.strip().splitlines()[-1])
        gpu = json.loads(_checked(_run([*base, "gpu"], ctx["timeout"])).stdout.strip().splitlines()[-1])
    return {"jpeg_read": jpeg, "gpu": gpu}


# name, function, time limit on a GPU (s); the order is the order of importance
CASES: list[tuple[str, Callable[[dict], dict], float]] = [
    ("environment", environment, 60),
    ("cuda_tests", cuda_tests, 200),
    ("train_nin", train_nin, 200),
    ("rotation_paper", rotation_paper, 150),
    ("inference", inference, 120),
    ("torchrun", torchrun, 120),
    ("train_resnet18", train_resnet18, 120),
    ("train_alexnet", train_alexnet, 120),
    ("gpu_decode", gpu_decode, 120),
]


# ---------------------------------------------------------------------------------------------
# Runner


def _write(path: Path, doc: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=str))
    os.replace(tmp, path)


def _headline(name: str, r: dict) -> str:
    """One line of figures per case for the table."""
    if r["status"] != "ok":
        return r.get("error") or r.get("reason", "")
    if name == "environment":
        return (
            f"{r.get('gpu', 'no GPU')}, torch {r['torch']} (CUDA {r['torch_cuda']}), ort {r['onnxruntime']} -> "
            f"{r['deploy_auto_providers'][0]}"
        )
    if name == "cuda_tests":
        return r["summary"]
    if name.startswith("train_"):
        res = r["results"]
        return ", ".join(f"{k} {v['images_per_s']:.0f}" for k, v in res.items() if "images_per_s" in v) + " img/s"
    if name == "rotation_paper":
        return (
            f"warm epoch {r['warm_epoch_s']:.1f} s ({r['warm_images_per_s']:.0f} img/s), 100 epochs "
            f"~{r['extrapolated_100_epochs_min']:.0f} min"
        )
    if name == "inference":
        keys = [k for k in r if k.startswith(("pytorch", "ort_cuda"))] or list(r.get("images_per_s", {}))
        vals = {k: r.get(k, r.get("images_per_s", {}).get(k)) for k in keys}
        return ", ".join(f"{k} {v:.0f}" for k, v in vals.items() if isinstance(v, (int, float))) + " img/s"
    if name == "torchrun":
        return f"{r['epochs']} epoch, loss {r['train_loss']:.3f}, {r['images_per_s']:.0f} img/s"
    if name == "gpu_decode":
        g = r["gpu"]
        return (
            f"nvJPEG {g.get('gpu_img_s', 0):.0f} img/s vs {g.get('cpu_one_core_img_s', 0):.0f} one CPU core"
            if "gpu_img_s" in g
            else str(g)
        )
    return ""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="folder for gpu_check.json")
    ap.add_argument("--quick", action="store_true", help="smaller runs (CPU: seconds)")
    ap.add_argument(
        "--budget", type=float, default=480, help="seconds for all cases; a case that would not fit is skipped"
    )
    ap.add_argument("--cases", default=",".join(n for n, _, _ in CASES), help="comma-separated subset")
    args = ap.parse_args()

    import torch

    cuda = torch.cuda.is_available()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "gpu_check.json"
    wanted = set(args.cases.split(","))
    t_start = time.perf_counter()
    doc: dict[str, Any] = {
        "finished": False,
        "cuda": cuda,
        "quick": args.quick,
        "command": " ".join(sys.argv),
        "cases": {},
    }
    with tempfile.TemporaryDirectory(prefix="sslkit-gpu-check-") as tmp:
        for name, fn, limit in CASES:
            if name not in wanted:
                continue
            left = args.budget - (time.perf_counter() - t_start)
            ctx = {
                "cuda": cuda,
                "quick": args.quick,
                "tmp": tmp,
                "timeout": min(limit, max(left, 1)),
                "steps": 16 if args.quick else 40,
                "paper_images": 10_000 if args.quick else 50_000,
            }
            t0 = time.perf_counter()
            try:
                if cuda and left < min(limit, 60):
                    raise Skip(f"time budget: {left:.0f} s left of --budget {args.budget:.0f}")
                result = {"status": "ok", **fn(ctx)}
                if result.get("error"):
                    result["status"] = "failed"
            except Skip as why:
                result = {"status": "skipped", "reason": str(why)}
            except Exception as exc:  # guarded: record it, run the rest
                result = {
                    "status": "failed",
                    "error": f"{type(exc).__name__}: "
                    f"{str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}",
                    "traceback": traceback.format_exc()[-2000:],
                }
            result["seconds"] = round(time.perf_counter() - t0, 1)
            doc["cases"][name] = result
            doc["seconds"] = round(time.perf_counter() - t_start, 1)
            _write(path, doc)
            print(f"{name:15s} {result['status']:8s} {result['seconds']:6.1f} s  {_headline(name, result)}", flush=True)
    doc["finished"] = True
    _write(path, doc)
    failed = [n for n, r in doc["cases"].items() if r["status"] == "failed"]
    print(
        f"\n{len(doc['cases'])} cases in {doc['seconds']:.0f} s, {len(failed)} "
        f"failed{': ' + ', '.join(failed) if failed else ''}; wrote {path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
