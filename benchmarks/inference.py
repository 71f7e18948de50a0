"""Encoder inference: onnxruntime vs PyTorch eager (and OpenCV dnn), one run, CPU or CUDA.

    python benchmarks/inference.py [--run RUN] [--layer block2] [--backbone nin --width 1.0]
                                   [--batch 256] [--threads 2] [--images 4096]
                                   [--device cuda] [--json out.json]

The encoder is a run's (exported with `sslkit export`'s code path, verification included) or,
without --run, a freshly initialised backbone (speed does not depend on the weights). All
runtimes get the same preprocessed float32 batches, the same batch size and the same number of
threads, one warm-up batch each, then one timed pass over --images images. Printed: images/s
per runtime, onnxruntime / PyTorch, and the largest differences between the runtimes' outputs
(absolute, and relative to the largest feature).

With --device cuda: PyTorch eager on the GPU (host arrays in and out, and device-resident),
onnxruntime's CUDA provider with host arrays (session.run), with IO binding (input uploaded
once, output left on the device: what a GPU pipeline pays), and the --fp16 export on CUDA,
compared with the fp32 one (max relative difference).
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def _timed(fn, batches, sync=lambda: None) -> tuple[float, np.ndarray]:
    fn(batches[0])  # warm-up: allocations, kernel selection
    sync()
    outs = []
    t0 = time.perf_counter()
    for b in batches:
        outs.append(fn(b))
    sync()
    seconds = time.perf_counter() - t0
    return sum(len(b) for b in batches) / seconds, np.concatenate([np.asarray(o) for o in outs])


def _err(a: np.ndarray, b: np.ndarray) -> str:
    d = float(np.abs(a - b).max())
    return f"max abs {d:.2e}, relative {d / float(np.abs(b).max()):.2e}"


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float32) - b).max() / max(float(np.abs(b).max()), 1e-12))


def cuda_cases(backbone, layer: str, pool: str, shape, path: Path, batches: list[np.ndarray]) -> dict:
    """PyTorch eager vs onnxruntime CUDA (session.run, IO binding, fp16) on the GPU: images/s and agreement."""
    import onnxruntime as ort
    import torch

    from sslkit.data.datasets import CIFAR10_MEAN, CIFAR10_STD
    from sslkit.deploy import OnnxEncoder
    from sslkit.export.onnx import export_encoder
    from sslkit.run import Encoder

    sync = torch.cuda.synchronize
    encoder = (
        Encoder(copy.deepcopy(backbone).eval(), layer, pool).eval().cuda()
    )  # the export below needs the CPU original
    resident = [torch.from_numpy(b).cuda() for b in batches]
    out: dict = {"device": torch.cuda.get_device_name(), "onnxruntime": ort.__version__}

    def torch_host(b: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return encoder(torch.from_numpy(b).cuda(non_blocking=True)).cpu().numpy()

    out["pytorch_eager_fp32"], want = _timed(torch_host, batches, sync)
    n = sum(len(b) for b in batches)
    with torch.inference_mode():
        encoder(resident[0])
        sync()
        t0 = time.perf_counter()
        for x in resident:
            encoder(x)
        sync()
    out["pytorch_eager_fp32_resident"] = n / (time.perf_counter() - t0)

    if "CUDAExecutionProvider" not in ort.get_available_providers():  # e.g. the plain (CPU) onnxruntime wheel
        out["ort_cuda_skipped"] = (
            f"onnxruntime {ort.__version__} has no CUDA provider here ({', '.join(ort.get_available_providers())}): "
            "install onnxruntime-gpu to measure it"
        )
        return out
    enc = OnnxEncoder(path, provider="cuda")
    out["ort_provider"] = enc.provider
    run = lambda b: enc.session.run([enc.info.output_name], {enc.info.input_name: b})[0]  # noqa: E731
    out["ort_cuda_fp32_run"], have = _timed(run, batches)
    out["ort_vs_pytorch_rel"] = _rel(have, want)
    uploaded = [ort.OrtValue.ortvalue_from_numpy(b, "cuda", 0) for b in batches]
    enc.run_on_device(uploaded[0]).numpy()
    t0 = time.perf_counter()
    results = [enc.run_on_device(x) for x in uploaded]
    results[-1].numpy()  # the last output on the host: every run before it has finished
    out["ort_cuda_fp32_iobinding"] = n / (time.perf_counter() - t0)
    half = path.with_name("encoder-fp16.onnx")
    export_encoder(
        backbone, half, layer=layer, input_shape=shape, mean=CIFAR10_MEAN, std=CIFAR10_STD, pool=pool, fp16=True
    )
    enc16 = OnnxEncoder(half, provider="cuda")
    out["ort_cuda_fp16_run"], have16 = _timed(enc16, batches)
    out["fp16_vs_fp32_rel"] = _rel(have16, have)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, help="run folder to export (default: a fresh backbone)")
    ap.add_argument("--layer", help="stage (default: the run's best or last)")
    ap.add_argument("--backbone", default="nin")
    ap.add_argument("--width", type=float, default=1.0, help="width multiplier of a fresh nin/alexnet")
    ap.add_argument("--pool", default="avg")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--images", type=int, default=4096)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()

    import torch

    from sslkit import create_backbone
    from sslkit.data.datasets import CIFAR10_MEAN, CIFAR10_STD
    from sslkit.deploy import OnnxEncoder
    from sslkit.export.onnx import export_encoder, export_onnx
    from sslkit.run import Encoder, default_layer, load_run

    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="sslkit-bench-"))
    path = tmp / "encoder.onnx"
    if args.run:
        run = load_run(args.run)
        backbone, shape = run.backbone, run.input_shape
        layer = args.layer or default_layer(run)
        export_onnx(args.run, path, layer=layer, pool=args.pool)
        what = f"run {args.run}"
    else:
        opts = {"width": args.width} if args.backbone in ("nin", "alexnet") else {}
        torch.manual_seed(0)
        backbone, shape = create_backbone(args.backbone, **opts).eval(), (3, 32, 32)
        layer = args.layer or backbone.stage_names[-1]
        export_encoder(
            backbone, path, layer=layer, input_shape=shape, mean=CIFAR10_MEAN, std=CIFAR10_STD, pool=args.pool
        )
        what = f"fresh {args.backbone} {opts}"
    encoder = Encoder(backbone.eval(), layer, args.pool).eval()
    n = args.images // args.batch * args.batch or args.batch
    x = np.random.default_rng(0).standard_normal((n, *shape)).astype(np.float32)
    batches = [x[i : i + args.batch] for i in range(0, n, args.batch)]
    print(
        f"{what}, stage {layer}, pool {args.pool}: {n} images {list(shape)}, batch {args.batch}, {args.threads} threads"
    )

    if args.device == "cuda":
        r = cuda_cases(backbone, layer, args.pool, shape, path, batches)
        for k, v in r.items():
            print(f"{k:32s} {v:10.1f}" if isinstance(v, float) and v > 1 else f"{k:32s} {v}")
        if args.json:
            args.json.write_text(
                json.dumps({"what": what, "layer": layer, "images": n, "batch": args.batch, **r}, indent=1)
            )
        return

    def torch_run(b: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return encoder(torch.from_numpy(b)).numpy()

    ort_encoder = OnnxEncoder(path, provider="cpu", threads=args.threads)
    torch_ips, torch_out = _timed(torch_run, batches)
    ort_ips, ort_out = _timed(ort_encoder, batches)
    print(f"pytorch eager fp32     {torch_ips:8.0f} images/s   (torch {torch.__version__})")
    print(f"onnxruntime cpu        {ort_ips:8.0f} images/s   (provider {ort_encoder.provider})")
    print(f"ratio onnxruntime / pytorch: {ort_ips / torch_ips:.2f}x")
    print(f"onnxruntime vs pytorch: {_err(ort_out, torch_out)}")
    try:
        import cv2
    except ImportError:
        print("opencv: not installed (pip install opencv-python-headless)")
        return
    cv2.setNumThreads(args.threads)
    net = cv2.dnn.readNetFromONNX(str(path))

    def cv_run(b: np.ndarray) -> np.ndarray:
        net.setInput(b)
        return net.forward()

    cv_ips, cv_out = _timed(cv_run, batches)
    print(f"opencv dnn {cv2.__version__:<10}  {cv_ips:8.0f} images/s")
    print(f"opencv vs pytorch: {_err(cv_out, torch_out)}; opencv vs onnxruntime: {_err(cv_out, ort_out)}")


if __name__ == "__main__":
    main()
