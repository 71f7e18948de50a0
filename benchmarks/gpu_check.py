"""Check and measure sslkit on a GPU in one command: ONE JSON file in --out and a printed table.

    python3 benchmarks/gpu_check.py --out benchmarks/results/gpu          # <= 540 s on one GPU
    python3 benchmarks/gpu_check.py --out /tmp/check --quick               # CPU: records "CUDA absent", seconds

Writes ``OUT/gpu_check.json``, rewritten atomically after every case and while a case runs
(its sub-results as they come), so a kill of the whole check loses nothing finished:
``{"finished": bool, "cuda": bool, "budget_s": s, "seconds": s, "skipped_for_time": [names],
"verdict": {...}, "cases": {name: {"status": "ok"|"failed"|"timeout"|"skipped"|"running",
"seconds": s, "limit_s": s, ...figures... | "error": one line | "reason": why skipped,
"stdout_tail"/"stderr_tail" (failed and timed-out cases)}}}``.

Every case runs in its own process group (``start_new_session``) with its own time limit; at the
limit the whole group (torchrun's workers, a benchmark's own children) gets SIGTERM, then SIGKILL
after a grace period, so nothing keeps running on the GPU into the next case. The case limits
add up to at most the default budget (--budget-s 540: a 600 s device call with room); a case
whose limit no longer fits in what is left of the budget is skipped and listed in
``skipped_for_time``. Torch's inductor cache lives in ``OUT/inductor-cache`` (ignored by git),
so a second run on the same machine compiles from it. The exit status is 0 unless the check
itself could not run (or was interrupted).

Cases, most valuable first (limits in CASES):

  environment       GPU, driver, torch / CUDA / cuDNN, onnxruntime build and providers, the
                    provider sslkit.deploy starts in auto mode, C compiler, sslkit and its plugins
  cuda_tests        pytest -m cuda tests/test_cuda.py: pass / fail / skip counts
  train_nin         benchmarks/train_throughput.py on CUDA, NIN-4 batch 128 (x4): ceiling fp32 / bf16,
                    sslkit fp32 / bf16 / fp16 / bf16+compile / NCHW, cudnn.benchmark on, peak memory
  paper_epoch       rotation's paper preset (bf16, compiled, channels_last, 50,000 CIFAR-sized images
                    resident on the GPU): first and warm epoch wall time -> projected 100 epochs
  probe_cuda        sslkit probe on CUDA: kNN, --flip, --tiles 2, bf16 feature pass
  reproduce_smoke   sslkit reproduce rotnet-cifar10 --preset paper --smoke on CUDA
  ort_inference     benchmarks/inference.py --device cuda: PyTorch eager vs onnxruntime CUDA
  stores            training from a raw store, a JPEG store decoded on the CPU and on the GPU (nvJPEG),
                    and benchmarks/data_scale.py's batched nvJPEG vs CPU decode
  step_profile      FLOPs of one step (FlopCounterMode) -> achieved TFLOP/s vs the bf16 peak (datasheet
                    and a measured matmul), peak memory, host-device syncs in one epoch
  context_fp16      the context task's throughput, sslkit fp32 / bf16 / fp16
  compile_cache     C compiler check; one compiled step in two fresh processes: cold vs from the cache
  torchrun_1proc    torchrun --nproc_per_node 1: the launcher path only (one process: no process
                    group, no NCCL, DDP or SyncBatchNorm)
  torchrun_nccl_2gpu torchrun --nproc_per_node 2 on 2 GPUs: NCCL, DDP, SyncBatchNorm (skipped with
                    the reason on a 1-GPU machine)

Extra cases, run only when named in --cases: train_resnet18, train_alexnet.

At the end the check prints the paper preset's projected wall time (warm epoch x 100, plus the
first epoch's compile) against the goal (under 3 minutes on one H100) and names the largest
measured gap between the two. Without CUDA every device case is recorded as skipped ("no CUDA
device") and the check exits 0 in seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
DEFAULT_BUDGET_S = 540.0  # one 600 s device call, with room for start-up and copying results back
GRACE_S = 5.0  # SIGTERM -> SIGKILL
GOAL_PAPER_S = 180.0  # rotation's paper preset, 100 epochs on one H100 (bf16, compiled, resident data)
PAPER_EPOCHS = 100
TAIL_CHARS = 3000
RESULT_ENV = "GPU_CHECK_RESULT"  # where a case process writes its figures (JSON, rewritten as they come)
# Dense bf16 tensor-core peak by the vendors' datasheets (TFLOP/s), matched on the device name.
BF16_PEAK_TFLOPS = {"H200": 989.4, "H100 SXM": 989.4, "H100 80GB HBM3": 989.4, "H100": 756.0, "A100": 312.0}


class Skip(Exception):
    """A case that does not apply here (recorded as skipped, with the reason)."""


class Interrupted(Exception):
    """SIGTERM / SIGINT to the check itself: the running case's group is killed, the JSON kept."""


@dataclass(frozen=True)
class Case:
    """One measured step, run in a child process: this file with ``--run-case NAME`` (or ``argv``)."""

    name: str
    limit_s: float
    run: Callable[[dict[str, Any], Recorder], dict[str, Any]] | None = None
    needs: str = "cuda"  # "none", "cuda" or "2gpu"
    argv: Callable[[dict[str, Any]], list[str]] | None = None  # the child's command instead (tests)


# ---------------------------------------------------------------------------------------------
# Child side: a case's figures, written as they come


def write_json_atomic(path: Path, doc: Any) -> None:
    """Rewrite ``path`` whole through a unique temporary file and a rename (never half a file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    try:
        tmp.write_text(json.dumps(doc, indent=1, default=str))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class Recorder:
    """The running case's figures, rewritten to its result file after every :meth:`put`."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.data: dict[str, Any] = {}

    def put(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.flush()

    def update(self, values: dict[str, Any]) -> None:
        self.data.update(values)
        self.flush()

    def flush(self) -> None:
        if self.path is not None:
            write_json_atomic(self.path, self.data)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:300] if text else ''}"


def run_case_in_child(name: str, ctx_path: Path) -> int:
    """``--run-case``: run one case function, its figures into the result file; exit 0/1."""
    ctx = json.loads(ctx_path.read_text())
    rec = Recorder(Path(ctx["result"]))
    case = {c.name: c for c in ALL_CASES}[name]
    assert case.run is not None
    try:
        rec.update({**case.run(ctx, rec), "done": True})
    except Skip as why:
        rec.update({"skip": str(why)})
    except Exception as exc:  # recorded: the runner turns it into a failed case
        traceback.print_exc()
        rec.update({"error": _one_line(exc)})
        return 1
    return 0


# ---------------------------------------------------------------------------------------------
# Parent side: process groups, limits, the JSON


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kill_group(proc: subprocess.Popen, grace_s: float | None = None) -> None:
    """SIGTERM to the child's whole process group, SIGKILL to what is left after ``grace_s`` (GRACE_S)."""
    grace_s = GRACE_S if grace_s is None else grace_s
    pgid = proc.pid  # start_new_session: the child leads its own group
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        proc.poll()  # reap the leader: a zombie still counts as a member
        if not _group_alive(pgid):
            break
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    proc.wait()


def _tail(path: Path, chars: int = TAIL_CHARS) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - chars))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _read_result(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def run_process(
    argv: list[str],
    limit_s: float,
    work: Path,
    env: dict[str, str],
    on_progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run ``argv`` in its own session; kill its group at ``limit_s``; what it wrote and printed."""
    result_path = work / "result.json"
    out_path, err_path = work / "stdout.txt", work / "stderr.txt"
    t0 = time.monotonic()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(
            argv, cwd=ROOT, stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True, env=env
        )
        seen_mtime = 0
        timed_out = False
        try:
            while proc.poll() is None:
                if time.monotonic() - t0 > limit_s:
                    timed_out = True
                    break
                time.sleep(0.2)
                mtime = result_path.stat().st_mtime_ns if result_path.exists() else 0
                if on_progress is not None and mtime != seen_mtime:
                    seen_mtime = mtime
                    on_progress(_read_result(result_path))
        finally:
            kill_group(proc)  # also after a normal exit: workers it left behind
    return {
        "exit": proc.returncode,
        "timed_out": timed_out,
        "seconds": round(time.monotonic() - t0, 1),
        "result": _read_result(result_path),
        "stdout_tail": _tail(out_path),
        "stderr_tail": _tail(err_path),
    }


def _case_record(case: Case, ran: dict[str, Any]) -> dict[str, Any]:
    """What the JSON keeps of one finished (or killed) case."""
    result = ran["result"]
    figures = {k: v for k, v in result.items() if k not in ("done", "skip", "error")}
    if "skip" in result and not ran["timed_out"]:
        return {"status": "skipped", "reason": result["skip"]}
    tails = {"stdout_tail": ran["stdout_tail"], "stderr_tail": ran["stderr_tail"]}
    if ran["timed_out"]:
        error = f"timed out after its limit of {case.limit_s:.0f} s; the process group was killed"
        return {"status": "timeout", "error": error, **figures, **tails}
    if result.get("error") or ran["exit"] != 0 or not result.get("done", case.argv is not None):
        error = result.get("error") or (
            f"exit {ran['exit']}: {_last_line(ran['stderr_tail']) or _last_line(ran['stdout_tail'])}"
        )
        return {"status": "failed", "error": error, **figures, **tails}
    if case.argv is not None and not result:  # a plain command: its output is the figure
        figures = {"stdout_tail": ran["stdout_tail"][-500:]}
    return {"status": "ok", **figures}


@dataclass
class Check:
    """The state of one run of the check: the document, where it goes, the clock."""

    doc: dict[str, Any]
    path: Path
    budget_s: float
    t_start: float

    def left(self) -> float:
        return self.budget_s - (time.monotonic() - self.t_start)

    def save(self) -> None:
        self.doc["seconds"] = round(time.monotonic() - self.t_start, 1)
        write_json_atomic(self.path, self.doc)


def _applies(case: Case, ctx: dict[str, Any]) -> str | None:
    """Why ``case`` cannot run here, or None."""
    if case.needs != "none" and ctx.get("environment_error"):
        return f"the environment case failed: {ctx['environment_error']}"
    if case.needs in ("cuda", "2gpu") and not ctx["cuda"]:
        return "no CUDA device"
    if case.needs == "2gpu" and ctx["gpu_count"] < 2:
        return f"{ctx['gpu_count']} GPU here: the 2-process NCCL / DDP / SyncBatchNorm case needs 2"
    return None


def _child_env(ctx: dict[str, Any]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(ctx.get("env", {}))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_one(check: Check, case: Case, ctx: dict[str, Any], tmp: Path) -> dict[str, Any]:
    """Run ``case`` (or skip it) and record it in the document."""
    reason = _applies(case, ctx)
    if reason is None and case.limit_s > check.left():
        reason = (
            f"time budget: {check.left():.0f} s left of {check.budget_s:.0f} s, this case may take {case.limit_s:.0f} s"
        )
        check.doc["skipped_for_time"].append(case.name)
    if reason is not None:
        return {"status": "skipped", "reason": reason, "seconds": 0.0, "limit_s": case.limit_s}
    work = Path(tempfile.mkdtemp(prefix=f"{case.name}-", dir=tmp))
    case_ctx = {**ctx, "work": str(work), "result": str(work / "result.json"), "limit_s": case.limit_s}
    ctx_path = work / "ctx.json"
    ctx_path.write_text(json.dumps(case_ctx))
    argv = (
        case.argv(case_ctx)
        if case.argv is not None
        else [sys.executable, str(Path(__file__).resolve()), "--run-case", case.name, "--ctx", str(ctx_path)]
    )
    env = {**_child_env(ctx), RESULT_ENV: case_ctx["result"]}

    def progress(partial: dict[str, Any]) -> None:
        check.doc["cases"][case.name] = {"status": "running", "limit_s": case.limit_s, **partial}
        check.save()

    ran = run_process(argv, case.limit_s, work, env, progress)
    return {**_case_record(case, ran), "seconds": ran["seconds"], "limit_s": case.limit_s}


def run_check(cases: list[Case], out: Path, budget_s: float, ctx: dict[str, Any], quiet: bool = False) -> Check:
    """Run ``cases`` in order under one budget; ``OUT/gpu_check.json`` rewritten after each."""
    out.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {
        "finished": False,
        "cuda": ctx["cuda"],
        "quick": ctx.get("quick", False),
        "budget_s": budget_s,
        "command": " ".join(sys.argv),
        "skipped_for_time": [],
        "cases": {},
    }
    check = Check(doc, out / "gpu_check.json", budget_s, time.monotonic())
    check.save()
    with tempfile.TemporaryDirectory(prefix="sslkit-gpu-check-") as tmp:
        for case in cases:
            record = run_one(check, case, ctx, Path(tmp))
            doc["cases"][case.name] = record
            check.save()
            if case.name == "environment":
                ctx.update(_found_devices(record))
                doc["cuda"] = ctx["cuda"]
            if not quiet:
                print(
                    f"{case.name:19s} {record['status']:8s} {record['seconds']:6.1f} s  {_headline(case.name, record)}"
                )
    doc["finished"] = True
    check.save()
    return check


def _found_devices(env_record: dict[str, Any]) -> dict[str, Any]:
    """What the environment case found: CUDA or not, how many GPUs, or why nothing else can run."""
    cuda = bool(env_record.get("cuda_available"))
    found: dict[str, Any] = {"cuda": cuda, "gpu_count": int(env_record.get("gpu_count") or 0) if cuda else 0}
    if env_record["status"] != "ok":
        found["environment_error"] = env_record.get("error") or env_record.get("reason")
    return found


# ---------------------------------------------------------------------------------------------
# Cases (each runs in a child process; subprocesses it starts stay in its process group)


def _stream(cmd: list[str], cwd: Path = ROOT) -> tuple[int, str]:
    """Run ``cmd``, echoing its output line by line (so a killed case keeps what it printed)."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        lines.append(line)
    return proc.wait(), "".join(lines)


def _checked(cmd: list[str], cwd: Path = ROOT) -> str:
    code, text = _stream(cmd, cwd)
    if code:
        raise RuntimeError(f"exit {code}: {_last_line(text)} ({' '.join(map(str, cmd[1:5]))} ...)")
    return text


def _sslkit(*args: str) -> list[str]:
    return [sys.executable, "-m", "sslkit", *args]


def c_compiler() -> dict[str, Any]:
    """The C compiler torch.compile needs (Triton builds its launcher with it), or a clear note."""
    found = os.environ.get("CC") or next(
        (p for p in (shutil.which(n) for n in ("cc", "gcc", "clang")) if p is not None), None
    )
    if found is None:
        return {
            "c_compiler": None,
            "c_compiler_note": "no C compiler found (CC, cc, gcc, clang): torch.compile cannot build Triton's "
            "launcher, so the compiled cases fail here",
        }
    proc = subprocess.run([found, "--version"], capture_output=True, text=True, timeout=20)
    return {"c_compiler": found, "c_compiler_version": _last_line(proc.stdout.splitlines()[0] if proc.stdout else "")}


def bf16_peak_tflops(device_name: str) -> float | None:
    """The datasheet's dense bf16 peak for this GPU (first matching key), or None."""
    return next((v for k, v in BF16_PEAK_TFLOPS.items() if k in device_name), None)


def environment(ctx: dict[str, Any], rec: Recorder) -> dict[str, Any]:
    rec.update({"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count()})
    rec.update(c_compiler())
    import torch

    rec.update(
        {
            "torch": torch.__version__,
            "torch_cuda": torch.version.cuda,
            "cuda_available": torch.cuda.is_available(),
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        }
    )
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        rec.update(
            {
                "gpu": p.name,
                "gpu_count": torch.cuda.device_count(),
                "capability": f"{p.major}.{p.minor}",
                "gpu_memory_gib": round(p.total_memory / 2**30, 1),
                "multiprocessors": p.multi_processor_count,
                "bf16": torch.cuda.is_bf16_supported(),
                "bf16_peak_tflops_datasheet": bf16_peak_tflops(p.name),
            }
        )
    smi = shutil.which("nvidia-smi")
    if smi:
        q = subprocess.run(
            [smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        rec.put("nvidia_smi", q.stdout.strip() or _last_line(q.stderr))
    rec.update(_sslkit_found())
    return _onnxruntime_found(Path(ctx["work"]))


def _sslkit_found() -> dict[str, Any]:
    try:
        from sslkit.plugins import load_plugins

        plugins = load_plugins()
    except Exception as exc:  # not installed in this python: every later case would fail the same way
        raise RuntimeError(
            f"sslkit does not load in {sys.executable} ({_one_line(exc)}); install it first: pip install --no-deps "
            "--no-build-isolation -e . -e plugins/sslkit-rotation -e plugins/sslkit-context"
        ) from None
    tasks = plugins.tasks.names()
    missing = [t for t in ("rotation", "context") if t not in tasks]
    if missing:
        raise RuntimeError(
            f"the task plugins {', '.join(missing)} are not installed: pip install --no-deps --no-build-isolation "
            "-e plugins/sslkit-rotation -e plugins/sslkit-context"
        )
    return {"sslkit_tasks": tasks}


def _onnxruntime_found(work: Path) -> dict[str, Any]:
    """onnxruntime's build and the provider sslkit.deploy really starts in auto mode (a one-node model)."""
    import onnx
    import onnxruntime as ort

    from sslkit import deploy

    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
    )
    path = work / "relu.onnx"
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)], ir_version=10), path)
    _, report = deploy.start_session(path)
    return {
        "onnxruntime": ort.__version__,
        "onnxruntime_providers": ort.get_available_providers(),
        "onnxruntime_gpu_dist": deploy._installed("onnxruntime-gpu"),
        "onnxruntime_cpu_dist": deploy._installed("onnxruntime"),
        "onnxruntime_problem": deploy.gpu_build_problem(),
        "nvidia_device_present": deploy.cuda_device_present(),
        "tensorrt_present": deploy.tensorrt_present(),
        "deploy_auto_providers": list(report.providers),
        "deploy_auto_fallback": report.fallback,
        "deploy_auto_note": report.note,
    }


def cuda_tests(ctx: dict[str, Any], rec: Recorder) -> dict[str, Any]:
    code, text = _stream(
        [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-rfE", "-p", "no:cacheprovider", "tests/test_cuda.py"]
    )
    summary = _last_line(text)
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", summary)}
    failed = [ln.split(" ", 1)[1][:200] for ln in text.splitlines() if ln.startswith(("FAILED ", "ERROR "))]
    out = {"summary": summary, "exit": code, **counts, "failures": failed}
    if code not in (0, 5) or counts.get("failed") or counts.get("error") or counts.get("errors"):
        out["error"] = f"{len(failed)} failed: " + "; ".join(failed)[:500]
    return out


def _throughput(ctx: dict[str, Any], rec: Recorder, *args: str) -> dict[str, Any]:
    """benchmarks/train_throughput.py on CUDA; its JSON (appended to after every case) copied as it grows."""
    js = Path(ctx["work"]) / f"throughput-{time.monotonic_ns()}.json"
    cmd = [sys.executable, str(BENCH / "train_throughput.py"), "--device", _device(ctx), "--steps", str(ctx["steps"])]
    proc = subprocess.Popen([*cmd, *args, "--json", str(js)], cwd=ROOT)
    while proc.poll() is None:
        time.sleep(0.5)
        if js.is_file():
            rec.put("results", _read_result(js).get("results", {}))
    if not js.is_file():
        raise RuntimeError(f"train_throughput.py wrote no JSON (exit {proc.returncode})")
    data = _read_result(js)
    out = {"results": data.get("results", {}), "ratios": data.get("ratios", {})}
    errors = {k: v["error"] for k, v in out["results"].items() if "error" in v}
    if errors:
        out["error"] = "; ".join(f"{k}: {v}" for k, v in errors.items())[:500]
    return out


def train_nin(ctx: dict[str, Any], rec: Recorder) -> dict[str, Any]:
    cases = "ceiling,ceiling_bf16,sslkit,sslkit_bf16,sslkit_bf16_compile,sslkit_fp16,sslkit_nchw"
    return _throughput(ctx, rec, "--cases", cases)


def train_resnet18(ctx: dict[str, Any], rec: Recorder) -> dict[str, Any]:
    args = ["--backbone", "resnet18", "--image-size", "32", "--cases", "ceiling,ceiling_bf16,sslkit,sslkit_bf16"]
    return _throughput(ctx, rec, *args)


def train_alexnet(ctx: dict[str, Any], rec: Recorder) -> dict[str, Any]:
    args = ["--backbone", "alexnet", "--image-size", "96", "--cases", "ceiling,ceiling_bf16,sslkit,sslkit_bf16"]
    return _throughput(ctx, rec, *args)


def context_fp16(ctx: dict[str, Any], rec: Recorder) -> dict[str, Any]:
    return _throughput(ctx, rec, "--task", "context", "--cases", "sslkit,sslkit_bf16,sslkit_fp16")


def _device(ctx: dict[str, Any]) -> str:
    """Where the training cases run: cuda (a CPU dry run of the code paths may say cpu)."""
    return str(ctx.get("device", "cuda"))


def _generated_plugins(n: int):
    """sslkit's plugins plus ``gpucheck-random``: ``n`` CIFAR-sized random uint8 images (speed does
    not depend on the pixels)."""
    import torch

    from sslkit.data.datasets import ImageData
    from sslkit.hookspecs import hookimpl
    from sslkit.plugins import load_plugins

    def load(split: str, root: Any) -> ImageData:
        g = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)  # [N, 3, 32, 32]
        return ImageData(images, None, [], f"random {n}")

    class Generated:
        @hookimpl
        def register_datasets(self, register: Callable[..., None]) -> None:
            register("gpucheck-random", load)

    return load_plugins(extra=[Generated()])


def _epoch_clock(rec: Recorder, key: str):
    """A training callback: wall seconds of each epoch (evaluation and checkpoint included), recorded as they end."""
    from sslkit.engine.callbacks import Callback

    class EpochClock(Callback):
        def __init__(self) -> None:
            self.walls: list[float] = []
            self.t = time.perf_counter()
            self.info: dict[str, Any] = {}

        def on_start(self, info: dict[str, Any]) -> None:
            self.t, self.info = time.perf_counter(), info

        def on_epoch_end(self, record: dict[str, Any]) -> None:
            now = time.perf_counter()  # the epoch's last metrics were read back: its kernels are done
            self.walls.append(now - self.t)
            self.t = now
            rec.put(key, {"epoch_wall_s": self.walls, "last": record})

    return EpochClock()


def paper_epoch(ctx: dict[str, Any], rec: Recorder) -> dict[str, Any]:
    """Rotation's paper preset under the goal's settings, 3 epochs: the first compiles, the others are warm."""
    import torch

    from sslkit.config import assemble
    from sslkit.engine.trainer import train

    torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest algorithms
    n = int(ctx["paper_images"])
    plugins = _generated_plugins(n)
    sets = ["data.name=gpucheck-random", "precision=bf16", "compile=true", "channels_last=true"]
    cfg = assemble("rotation", plugins, preset="paper", sets=sets, flags={"epochs": 3, "device": _device(ctx)})
    clock = _epoch_clock(rec, "progress")
    with tempfile.TemporaryDirectory(dir=ctx["work"]) as out:
        history = train(cfg, out, plugins=plugins, callbacks=[clock]).history
    walls = clock.walls
    warm = min(walls[1:])
    projected = walls[0] + (PAPER_EPOCHS - 1) * warm
    trained = int(clock.info.get("train_images", n))  # the preset holds a seeded fraction out
    return {
        "generated_images": n,
        "images": trained,
        "settings": sets,
        "streaming": clock.info.get("streaming"),
        "heldout_images": clock.info.get("heldout_images"),
        "epoch_wall_s": walls,
        "train_seconds": [r["seconds"] for r in history],
        "first_epoch_s": walls[0],
        "warm_epoch_s": warm,
        "warm_train_s": min(r["seconds"] for r in history[1:]),
        "warm_images_per_s": trained / warm,
        "projected_100_epochs_s": projected,
        "goal_s": GOAL_PAPER_S,
        "meets_goal": projected <= GOAL_PAPER_S,
        "note": "projected = first epoch (compiles) + 99 x the fastest warm epoch; wall time per epoch "
        "includes the held-out evaluation and the checkpoint",
    }


def _rotation_step(batch: int, compiled: bool = False, device: str = "cuda"):
    """NIN-4 rotation model, SGD, bf16 autocast, channels_last on CUDA: (step function, FLOPs per step).
    FLOPs are counted on the eager model; ``compiled`` then steps through ``torch.compile(model)``."""
    import torch
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    from sslkit import create_backbone, create_task
    from sslkit.engine.trainer import PretextModel

    torch.manual_seed(0)
    backbone = create_backbone("nin")
    model = PretextModel(backbone, create_task("rotation", backbone)).to(device, memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    x = torch.randn(4 * batch, 3, 32, 32, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.arange(4 * batch, device=device) // batch  # [4B] rotation labels

    runner: Callable[..., Any] = model

    def step() -> None:
        with torch.autocast(torch.device(device).type, torch.bfloat16):
            loss = F.cross_entropy(runner(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    with FlopCounterMode(display=False) as counter:
        step()
    if compiled:
        runner = torch.compile(model)
    return step, counter.get_total_flops()


def _timed_ms(fn: Callable[[], None], repeats: int) -> float:
    """Median milliseconds of ``fn`` over ``repeats`` runs, timed with CUDA events after 3 warm-ups."""
    import torch

    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def _matmul_tflops() -> float:
    """The measured bf16 ceiling: an 8192^3 matrix product on random data."""
    import torch

    g = torch.Generator(device="cuda").manual_seed(0)
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16, generator=g)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16, generator=g)
    ms = _timed_ms(lambda: torch.mm(a, b), 10)
    return 2 * 8192**3 / (ms / 1e3) / 1e12


def _syncs_in_one_epoch(ctx: dict[str, Any]) -> dict[str, Any]:
    """Host-device synchronisations while sslkit trains one epoch (bf16, eager), held-out evaluation included."""
    import warnings

    import torch

    from sslkit.config import assemble
    from sslkit.engine.trainer import train

    plugins = _generated_plugins(6400)
    cfg = assemble(
        "rotation", plugins, sets=["data.name=gpucheck-random", "precision=bf16"], flags={"epochs": 1, "device": "cuda"}
    )
    with tempfile.TemporaryDirectory(dir=ctx["work"]) as out, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("warn")
        try:
            history = train(cfg, out, plugins=plugins).history
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [str(w.message) for w in caught if "synchroniz" in str(w.message).lower()]
    last = history[0]
    steps = round(last["images_per_s"] * last["seconds"] / cfg.data.batch_size)
    return {"syncs_per_epoch": len(syncs), "steps_per_epoch": steps, "sync_examples": sorted(set(syncs))[:3]}


def step_profile(ctx: dict[str, Any], rec: Recorder) -> dict[str, Any]:
    import torch

    torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name()
    batch = 128
    step, flops = _rotation_step(batch)
    rec.update({"device": name, "batch_images": batch, "gflop_per_step": flops / 1e9})
    torch.cuda.reset_peak_memory_stats()
    ms = _timed_ms(step, 30)
    achieved = flops / (ms / 1e3) / 1e12
    rec.update(
        {
            "step_ms": ms,
            "images_per_s": batch / (ms / 1e3),
            "achieved_tflops": achieved,
            "peak_memory_mib": torch.cuda.max_memory_allocated() / 2**20,
        }
    )
    datasheet = bf16_peak_tflops(name)
    measured = _matmul_tflops()
    rec.update(
        {
            "bf16_peak_tflops_datasheet": datasheet,
            "bf16_matmul_tflops_measured": measured,
            "fraction_of_measured_peak": achieved / measured,
        }
    )
    return {**rec.data, **_syncs_in_one_epoch(ctx)}


def probe_cuda(ctx: dict[str, Any], rec: Recorder) -> dict[str, Any]:
    """`sslkit probe` on CUDA: kNN on cached features of a random NIN, mirrored copies, 2x2 tiles, bf16."""
    out = Path(ctx["work"]) / "probe"
    args = ["--random-init", "--backbone", "nin", "--backbone-set", "width=0.25", "--probe", "knn", "--flip"]
    args += ["--tiles", "2", "--precision", "bf16", "--device", _device(ctx), "--data", "sample", "-o", str(out)]
    t0 = time.perf_counter()
    _checked(_sslkit("probe", *args))
    report = json.loads((out / "probe-random-init.json").read_text())
    layer = report["best_layer"] or next(iter(report["layers"]))
    return {
        "command": "sslkit probe " + " ".join(args[:-2]),
        "seconds_wall": time.perf_counter() - t0,
        "features": report["features"],
        "layer": layer,
        "test_acc": report["layers"][layer]["test_acc"],
    }


def reproduce_smoke(ctx: dict[str, Any], rec: Recorder) -> dict[str, Any]:
    out = Path(ctx["work"]) / "reproduce"
    args = ["rotnet-cifar10", "--preset", "paper", "--smoke", "--data", "sample", "--device", _device(ctx)]
    args += ["-o", str(out)]
    _checked(_sslkit("reproduce", *args))
    table = json.loads((out / "reproduce.json").read_text())
    return {
        "command": "sslkit reproduce " + " ".join(args[:-2]),
        "total_seconds": table["total_seconds"],
        "pretext_seconds": table["pretext_seconds"],
        "rows": len(table["rows"]),
        "findings": table["findings"],
    }


def ort_inference(ctx: dict[str, Any], rec: Recorder) -> dict[str, Any]:
    js = Path(ctx["work"]) / "inference.json"
    _checked([sys.executable, str(BENCH / "inference.py"), "--device", "cuda", "--images", "8192", "--json", str(js)])
    return json.loads(js.read_text())


def _store_rates(ctx: dict[str, Any], rec: Recorder, raw: Path, jpeg: Path) -> dict[str, Any]:
    """Warm-epoch images/s of NIN-4 bf16 training streamed from each store (decoded in the loop)."""
    from sslkit.config import assemble
    from sslkit.engine.trainer import train
    from sslkit.plugins import load_plugins

    plugins = load_plugins()
    rates: dict[str, Any] = {}
    workers = min(8, os.cpu_count() or 1)
    for name, store, decode in (
        ("raw", raw, "cpu"),
        ("jpeg_cpu_decode", jpeg, "cpu"),
        ("jpeg_gpu_decode", jpeg, "gpu"),
    ):
        sets = [f"data.name={store}", "data.in_memory=false", f"data.decode={decode}", f"data.workers={workers}"]
        sets += ["data.subset=1024"] if ctx["quick"] else []
        cfg = assemble("rotation", plugins, sets=[*sets, "precision=bf16"], flags={"epochs": 2, "device": _device(ctx)})
        with tempfile.TemporaryDirectory(dir=ctx["work"]) as out:
            last = train(cfg, out, plugins=plugins).history[-1]
        rates[name] = {"images_per_s": last["images_per_s"], "workers": workers}
        rec.put("training", rates)
    return rates


def stores(ctx: dict[str, Any], rec: Recorder) -> dict[str, Any]:
    """Training from a raw and a JPEG store (CPU and GPU decode in the loop); batched nvJPEG vs CPU decode."""
    from sslkit.data.store import pack

    work = Path(ctx["work"])
    workers = min(8, os.cpu_count() or 1)
    t0 = time.perf_counter()
    pack("sample", work / "raw", encoding="raw", workers=workers)
    pack("sample", work / "jpeg", encoding="jpeg", quality=90, workers=workers)
    rec.put("pack_seconds", time.perf_counter() - t0)
    training = _store_rates(ctx, rec, work / "raw", work / "jpeg")
    text = _checked(
        [sys.executable, str(BENCH / "data_scale.py"), "--work", str(work / "scale"), "--workers", str(workers)]
        + ["--n", "300", "--case", "gpu"]
    )
    return {"training": training, "decode_256px": json.loads(text.strip().splitlines()[-1])}


COMPILED_STEP = r"""
import json, sys, time, torch
sys.path.insert(0, sys.argv[1])
from gpu_check import _rotation_step
torch.backends.cudnn.benchmark = True
step, _ = _rotation_step(128, compiled=True)
t1 = time.perf_counter()
step(); torch.cuda.synchronize()
first = time.perf_counter() - t1
t2 = time.perf_counter()
for _ in range(10):
    step()
torch.cuda.synchronize()
print("RESULT " + json.dumps({"first_step_s": first, "warm_step_ms": (time.perf_counter() - t2) * 100}))
"""


def _cache_mib(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20 if folder.is_dir() else 0.0


def compile_cache(ctx: dict[str, Any], rec: Recorder) -> dict[str, Any]:
    """One compiled training step in two fresh processes: the second compiles from the persistent cache."""
    compiler = c_compiler()
    rec.update(compiler)
    if compiler["c_compiler"] is None:
        raise RuntimeError(compiler["c_compiler_note"])
    cache = Path(os.environ.get("TORCHINDUCTOR_CACHE_DIR", ""))
    rec.update({"inductor_cache_dir": str(cache), "cache_mib_before": _cache_mib(cache)})
    for attempt in ("first_process", "second_process"):
        text = _checked([sys.executable, "-c", COMPILED_STEP, str(BENCH)])
        line = [ln for ln in text.splitlines() if ln.startswith("RESULT ")][-1]
        rec.put(attempt, json.loads(line[7:]))
    return {**rec.data, "cache_mib_after": _cache_mib(cache)}


def _torchrun(ctx: dict[str, Any], processes: int) -> dict[str, Any]:
    exe = shutil.which("torchrun")
    launcher = [exe] if exe else [sys.executable, "-m", "torch.distributed.run"]
    out = Path(ctx["work"]) / "run"
    cmd = [*launcher, "--standalone", "--nproc_per_node", str(processes), "-m", "sslkit", "train", "rotation"]
    cmd += ["--device", _device(ctx), "--epochs", "1", "--set", "data.subset=2048", "--set", "backbone.width=0.25"]
    _checked([*cmd, "--out", str(out)])
    rows = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    if not (out / "checkpoint.pt").is_file():
        raise RuntimeError("the torchrun run wrote no checkpoint.pt")
    last = rows[-1]
    return {
        "processes": processes,
        "epochs": len(rows),
        "train_loss": last.get("train_loss"),
        "images_per_s": last.get("images_per_s"),
    }


def torchrun_1proc(ctx: dict[str, Any], rec: Recorder) -> dict[str, Any]:
    return {**_torchrun(ctx, 1), "note": "one process: the launcher path only (no process group, NCCL, DDP or SyncBN)"}


def torchrun_nccl_2gpu(ctx: dict[str, Any], rec: Recorder) -> dict[str, Any]:
    return {**_torchrun(ctx, 2), "note": "two processes on two GPUs: NCCL all-reduce, DDP, SyncBatchNorm"}


# The order is the order of importance; the limits add up to at most DEFAULT_BUDGET_S (a test checks).
CASES: list[Case] = [
    Case("environment", 25, environment, needs="none"),
    Case("cuda_tests", 90, cuda_tests),
    Case("train_nin", 70, train_nin),
    Case("paper_epoch", 65, paper_epoch),
    Case("probe_cuda", 35, probe_cuda),
    Case("reproduce_smoke", 40, reproduce_smoke),
    Case("ort_inference", 30, ort_inference),
    Case("stores", 45, stores),
    Case("step_profile", 35, step_profile),
    Case("context_fp16", 30, context_fp16),
    Case("compile_cache", 30, compile_cache),
    Case("torchrun_1proc", 20, torchrun_1proc),
    Case("torchrun_nccl_2gpu", 25, torchrun_nccl_2gpu, needs="2gpu"),
]
EXTRA_CASES: list[Case] = [
    Case("train_resnet18", 45, train_resnet18),
    Case("train_alexnet", 45, train_alexnet),
]
ALL_CASES = CASES + EXTRA_CASES


# ---------------------------------------------------------------------------------------------
# The paper preset against its goal, and the table


def _images_per_s(doc: dict[str, Any], case: str, key: str) -> float | None:
    value = doc["cases"].get(case, {}).get("results", {}).get(key, {}).get("images_per_s")
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


def verdict(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The paper preset's projected 100 epochs vs the goal, and the measured gaps in seconds over 100 epochs."""
    paper = doc["cases"].get("paper_epoch", {})
    if "projected_100_epochs_s" not in paper:
        return None
    warm, images = paper["warm_epoch_s"], paper["images"]
    gaps: dict[str, float] = {
        "first epoch (compile, cuDNN autotuning)": paper["first_epoch_s"] - warm,
        "held-out evaluation and checkpoint per epoch": PAPER_EPOCHS * max(0.0, warm - paper["warm_train_s"]),
    }
    loop, ceiling = (
        _images_per_s(doc, "train_nin", "sslkit_bf16_compile"),
        _images_per_s(doc, "train_nin", "ceiling_bf16"),
    )
    if loop and ceiling and ceiling > loop:  # sslkit's loop (data, crop, rotations, bookkeeping) vs the bare step
        gaps["training loop vs the bare model step (bf16)"] = PAPER_EPOCHS * images * (1 / loop - 1 / ceiling)
    profile = doc["cases"].get("step_profile", {})
    peak = profile.get("bf16_matmul_tflops_measured") or profile.get("bf16_peak_tflops_datasheet")
    if ceiling and peak and profile.get("gflop_per_step"):
        per_image = profile["gflop_per_step"] * 1e9 / profile["batch_images"]  # fwd + bwd, 4 rotations
        at_peak = images * per_image / (peak * 1e12)
        gaps["model step vs the bf16 matmul peak (kernel efficiency, launch overhead)"] = PAPER_EPOCHS * max(
            0.0, images / ceiling - at_peak
        )
    gaps = {k: round(v, 1) for k, v in gaps.items()}
    largest = max(gaps, key=lambda k: gaps[k])
    projected = paper["projected_100_epochs_s"]
    return {
        "projected_100_epochs_s": round(projected, 1),
        "goal_s": GOAL_PAPER_S,
        "meets_goal": projected <= GOAL_PAPER_S,
        "over_goal_s": round(max(0.0, projected - GOAL_PAPER_S), 1),
        "gaps_s": gaps,
        "largest_gap": largest,
        "syncs_per_epoch": profile.get("syncs_per_epoch"),
    }


def _verdict_lines(v: dict[str, Any] | None) -> list[str]:
    if v is None:
        return ["paper preset: not measured here (no CUDA, or paper_epoch did not finish)"]
    state = "meets" if v["meets_goal"] else f"misses by {v['over_goal_s']:.0f} s"
    lines = [
        f"paper preset, 100 epochs projected: {v['projected_100_epochs_s']:.0f} s "
        f"({v['projected_100_epochs_s'] / 60:.1f} min) vs the goal {v['goal_s']:.0f} s: {state}",
        f"largest measured gap: {v['largest_gap']} ({v['gaps_s'][v['largest_gap']]:.0f} s over 100 epochs)",
    ]
    lines += [f"  {k}: {s:.0f} s" for k, s in v["gaps_s"].items()]
    if v.get("syncs_per_epoch") is not None:
        lines.append(f"  host-device syncs in one epoch: {v['syncs_per_epoch']}")
    return lines


def _headline(name: str, r: dict[str, Any]) -> str:
    """One line of figures per case for the table."""
    if r["status"] != "ok":
        return str(r.get("error") or r.get("reason", ""))[:200]
    with contextlib.suppress(KeyError, TypeError, ValueError, StopIteration):
        return _figures(name, r)
    return ""


def _figures(name: str, r: dict[str, Any]) -> str:
    if name == "environment":
        return (
            f"{r.get('gpu', 'no GPU')} x{r.get('gpu_count', 0)}, torch {r['torch']} (CUDA {r['torch_cuda']}), "
            f"ort {r['onnxruntime']} -> {r['deploy_auto_providers'][0]}, C compiler {r['c_compiler'] or 'none'}"
        )
    if name == "cuda_tests":
        return str(r["summary"])
    if "results" in r:
        res = r["results"]
        return ", ".join(f"{k} {v['images_per_s']:.0f}" for k, v in res.items() if "images_per_s" in v) + " img/s"
    if name == "paper_epoch":
        return (
            f"warm epoch {r['warm_epoch_s']:.1f} s ({r['warm_images_per_s']:.0f} img/s), first "
            f"{r['first_epoch_s']:.1f} s -> 100 epochs ~{r['projected_100_epochs_s']:.0f} s"
        )
    if name == "step_profile":
        return (
            f"{r['achieved_tflops']:.0f} TFLOP/s of {r['bf16_matmul_tflops_measured']:.0f} (matmul), "
            f"{r['peak_memory_mib']:.0f} MiB peak, {r['syncs_per_epoch']} syncs / {r['steps_per_epoch']} steps"
        )
    if name == "compile_cache":
        first, again = r["first_process"]["first_step_s"], r["second_process"]["first_step_s"]
        return f"first compile {first:.1f} s, from the cache {again:.1f} s"
    if name == "stores":
        return ", ".join(f"{k} {v['images_per_s']:.0f}" for k, v in r["training"].items()) + " img/s"
    if name.startswith("torchrun"):
        return f"{r['processes']} process(es), loss {r['train_loss']:.3f}, {r['images_per_s']:.0f} img/s"
    if name == "probe_cuda":
        return f"kNN test acc {r['test_acc']:.3f} in {r['seconds_wall']:.0f} s"
    if name == "reproduce_smoke":
        return f"{r['rows']} rows in {r['total_seconds']:.0f} s"
    if name == "ort_inference":
        keys = [k for k in r if k.startswith(("pytorch", "ort_cuda"))]
        return ", ".join(f"{k} {r[k]:.0f}" for k in keys if isinstance(r[k], (int, float))) + " img/s"
    return ""


# ---------------------------------------------------------------------------------------------
# Command line


def _select(names: str | None) -> list[Case]:
    if not names:
        return list(CASES)
    by_name = {c.name: c for c in ALL_CASES}
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in by_name]
    if unknown:
        raise SystemExit(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(by_name)}")
    if "environment" not in wanted:  # the others need what it finds (CUDA, GPU count)
        wanted.insert(0, "environment")
    return [by_name[n] for n in wanted]


def _context(args: argparse.Namespace) -> dict[str, Any]:
    cache = args.out.resolve() / "inductor-cache"
    cache.mkdir(parents=True, exist_ok=True)
    (cache / ".gitignore").write_text("*\n")  # a machine-local cache: never committed with the results
    return {
        "cuda": False,  # until the environment case says otherwise
        "gpu_count": 0,
        "quick": args.quick,
        "steps": 16 if args.quick else 40,
        "paper_images": 10_000 if args.quick else 50_000,
        "out": str(args.out.resolve()),
        "env": {"TORCHINDUCTOR_CACHE_DIR": str(cache)},
    }


def _interrupt(signum: int, frame: Any) -> None:
    raise Interrupted(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, help="folder for gpu_check.json (and the inductor cache)")
    ap.add_argument("--quick", action="store_true", help="smaller runs")
    ap.add_argument("--budget-s", type=float, default=DEFAULT_BUDGET_S, help="seconds for all cases (default 540)")
    ap.add_argument("--cases", default=None, help="comma-separated subset (environment always runs first)")
    ap.add_argument("--run-case", help=argparse.SUPPRESS)  # internal: one case in this child process
    ap.add_argument("--ctx", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.run_case:
        return run_case_in_child(args.run_case, args.ctx)
    if args.out is None:
        ap.error("--out is required")
    cases = _select(args.cases)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _interrupt)
    ctx = _context(args)
    try:
        check = run_check(cases, args.out, args.budget_s, ctx)
    except Interrupted as why:
        print(f"interrupted ({why}): {args.out / 'gpu_check.json'} holds every case finished before", flush=True)
        return 1
    doc = check.doc
    doc["verdict"] = verdict(doc)
    check.save()
    print()
    for line in _verdict_lines(doc["verdict"]):
        print(line)
    failed = [n for n, r in doc["cases"].items() if r["status"] in ("failed", "timeout")]
    skipped = f"; skipped for time: {', '.join(doc['skipped_for_time'])}" if doc["skipped_for_time"] else ""
    print(
        f"\n{len(doc['cases'])} cases in {doc['seconds']:.0f} s, CUDA {'present' if doc['cuda'] else 'absent'}, "
        f"{len(failed)} failed{': ' + ', '.join(failed) if failed else ''}{skipped}; wrote {check.path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
