"""Encoder inference on the CPU: onnxruntime vs PyTorch eager fp32 (and OpenCV dnn), one run.

    python benchmarks/inference.py [--run RUN] [--layer block2] [--backbone nin --width 1.0]
                                   [--batch 256] [--threads 2] [--images 4096]

The encoder is a run's (exported with `sslkit export`'s code path, verification included) or,
without --run, a freshly initialised backbone (speed does not depend on the weights). All
runtimes get the same preprocessed float32 batches, the same batch size and the same number of
threads, one warm-up batch each, then one timed pass over --images images. Printed: images/s
per runtime, onnxruntime / PyTorch, and the largest differences between the runtimes' outputs
(absolute, and relative to the largest feature).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def _timed(fn, batches) -> tuple[float, np.ndarray]:
    fn(batches[0])  # warm-up: allocations, kernel selection
    outs = []
    t0 = time.perf_counter()
    for b in batches:
        outs.append(fn(b))
    seconds = time.perf_counter() - t0
    return sum(len(b) for b in batches) / seconds, np.concatenate(outs)


def _err(a: np.ndarray, b: np.ndarray) -> str:
    d = float(np.abs(a - b).max())
    return f"max abs {d:.2e}, relative {d / float(np.abs(b).max()):.2e}"


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
    args = ap.parse_args()

    import torch

    from sslkit import create_backbone
    from sslkit.data.datasets import CIFAR10_MEAN, CIFAR10_STD
    from sslkit.deploy import OnnxEncoder
    from sslkit.export.encoder import Encoder, default_layer, load_run
    from sslkit.export.onnx import export_encoder, export_onnx

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
        export_encoder(backbone, path, layer=layer, input_shape=shape, mean=CIFAR10_MEAN, std=CIFAR10_STD, pool=args.pool)
        what = f"fresh {args.backbone} {opts}"
    encoder = Encoder(backbone.eval(), layer, args.pool).eval()
    n = args.images // args.batch * args.batch or args.batch
    x = np.random.default_rng(0).standard_normal((n, *shape)).astype(np.float32)
    batches = [x[i : i + args.batch] for i in range(0, n, args.batch)]
    print(f"{what}, stage {layer}, pool {args.pool}: {n} images {list(shape)}, batch {args.batch}, {args.threads} threads")

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
