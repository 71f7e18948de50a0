r"""Training throughput of sslkit vs the compute ceiling and a reference pipeline, in one run.

    python benchmarks/train_throughput.py [--width 1.0] [--steps 8] [--json results.json]
    python benchmarks/train_throughput.py --device cuda \
        --cases ceiling,ceiling_bf16,sslkit,sslkit_bf16,sslkit_bf16_compile,sslkit_nchw
    python benchmarks/train_throughput.py --device cuda --backbone alexnet --image-size 96 --cases ceiling,sslkit_bf16

Every case runs in its own subprocess, one after another on the same cores, and reports
images/s (and samples/s after the x4 rotation expansion) and its peak memory (max RSS; on CUDA
also the peak GPU memory, torch.cuda.max_memory_allocated, with cudnn.benchmark on). --json is
rewritten (atomically) after every case, so a run killed part-way keeps the cases it finished.
--task context measures the sslkit cases on the context task instead of rotation:

  data_sslkit      in-memory uint8 -> batched crop/flip -> normalise -> 4 rotations (no model)
  data_reference   the official RotNet style: per-sample PIL crop/flip/ToTensor/Normalize and
                   per-sample rotations in DataLoader workers, then collate (no model)
  ceiling          forward + backward + SGD step of the same model on tensors already in place,
                   with sslkit's default settings (no data pipeline)
  sslkit           `sslkit.train` itself, default settings (fp32, channels_last), warm epoch
  sslkit_bf16      the same with precision=bf16 (also: sslkit_fp16, sslkit_bf16_compile, sslkit_nchw:
                   any of _bf16/_fp16, _compile, _nchw (channels_last off) after "sslkit")
  ceiling_bf16     the ceiling under bf16 autocast
  reference        reference data pipeline + NCHW fp32 model step (what the official code runs)

Ratios printed at the end are the targets of the performance issue. Use --accuracy to also
train fp32 and bf16 briefly on the sample data and compare held-out rotation accuracy.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = ["data_sslkit", "data_reference", "ceiling", "sslkit", "sslkit_bf16", "reference"]


def _images(n: int):
    from sslkit.data.opener import load_dataset
    from sslkit.plugins import load_plugins

    data = load_dataset("sample", load_plugins(), "train")
    return data.images[:n]


class ReferenceDataset:
    """Per-sample transforms as in github.com/gidariss/FeatureLearningRotNet (dataloader.py)."""

    def __init__(self, images) -> None:
        import torchvision.transforms as T

        from sslkit.data.datasets import CIFAR10_MEAN, CIFAR10_STD

        self.images = images.permute(0, 2, 3, 1).numpy()  # HWC uint8, like torchvision CIFAR10
        self.transform = T.Compose(
            [
                T.RandomCrop(32, padding=4),
                T.RandomHorizontalFlip(),
                T.ToTensor(),
                T.Normalize(CIFAR10_MEAN, CIFAR10_STD),
            ]
        )

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        import numpy as np
        import torch
        from PIL import Image

        img = np.asarray(self.transform(Image.fromarray(self.images[i])))  # CHW float
        rotated = [np.ascontiguousarray(np.rot90(img, k, axes=(1, 2))) for k in range(4)]
        return torch.from_numpy(np.stack(rotated)), torch.arange(4)


def _reference_loader(images, batch: int, workers: int):
    import torch

    return torch.utils.data.DataLoader(
        ReferenceDataset(images),
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
        drop_last=True,
        persistent_workers=workers > 0,
    )


def _backbone_sets(args) -> list[str]:
    if args.backbone == "nin":
        return [f"backbone.width={args.width}", f"backbone.blocks={args.blocks}"]
    return [f"backbone.name={args.backbone}"] + ([f"backbone.width={args.width}"] if args.backbone == "alexnet" else [])


def _model(width: float, blocks: int, channels_last: bool, args=None):
    import torch

    from sslkit import create_backbone, create_task
    from sslkit.engine.model import PretextModel

    name = getattr(args, "backbone", "nin")
    opts = {"blocks": blocks, "width": width} if name == "nin" else ({"width": width} if name == "alexnet" else {})
    backbone = create_backbone(name, **opts)
    model = PretextModel(backbone, create_task("rotation", backbone))
    if args is not None:
        model = model.to(args.device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    return model, opt


def _step(model, opt, x, y):
    import torch.nn.functional as F

    loss = F.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def run_case(case: str, args) -> dict:
    import torch

    batch, steps = args.batch, args.steps
    images = _images(batch * (steps + 2))
    if case == "data_sslkit":
        from sslkit.data.augment import normalize, random_crop_flip
        from sslkit.data.datasets import CIFAR10_MEAN, CIFAR10_STD
        from sslkit_rotation import rotate

        g = torch.Generator().manual_seed(0)

        def one_pass() -> int:
            n = 0
            for i in range(0, images.shape[0] - batch + 1, batch):
                x = normalize(random_crop_flip(images[i : i + batch], 4, True, g), CIFAR10_MEAN, CIFAR10_STD)
                x = torch.cat([rotate(x, a) for a in (0, 90, 180, 270)])  # [4B, 3, 32, 32]
                n += 1
            return n

        one_pass()  # warm-up, as the reference's workers are started before timing
        t0 = time.perf_counter()
        n_batches = sum(one_pass() for _ in range(args.data_repeats))
        return {"images_per_s": n_batches * batch / (time.perf_counter() - t0)}
    if case == "data_reference":
        loader = _reference_loader(images, batch, args.workers)
        it = iter(loader)
        next(it)  # start the workers
        n_batches = 0
        t0 = time.perf_counter()
        for _ in range(args.data_repeats):
            for _batch in loader:
                n_batches += 1
        return {"images_per_s": n_batches * batch / (time.perf_counter() - t0)}
    if case in ("ceiling", "ceiling_bf16"):
        device = torch.device(args.device)
        model, opt = _model(args.width, args.blocks, channels_last=True, args=args)
        x = torch.randn(4 * batch, 3, args.image_size, args.image_size, device=device).contiguous(
            memory_format=torch.channels_last
        )
        y = torch.arange(4 * batch, device=device) // batch
        autocast = torch.autocast(device.type, torch.bfloat16, enabled=case == "ceiling_bf16")

        def timed_steps(n: int) -> float:
            t0 = time.perf_counter()
            for _ in range(n):
                with autocast:
                    _step(model, opt, x, y)
            if device.type == "cuda":
                torch.cuda.synchronize()  # kernels run asynchronously: wait for the last one
            return time.perf_counter() - t0

        timed_steps(2)  # warm-up: cuDNN algorithm choice, allocator
        return {"images_per_s": steps * batch / timed_steps(steps)}
    if case.startswith("sslkit"):
        from sslkit.config import assemble
        from sslkit.engine.trainer import train
        from sslkit.plugins import load_plugins

        plugins = load_plugins()
        sets = [*_backbone_sets(args), f"data.subset={batch * steps}", f"data.batch_size={batch}", "data.holdout=0"]
        if args.image_size != 32:
            sets.append(f"data.image_size={args.image_size}")
        flags = set(case.split("_")[1:])
        unknown = flags - {"bf16", "fp16", "compile", "nchw"}
        if unknown:
            raise SystemExit(f"unknown case {case}")
        sets += [f"precision={p}" for p in ("bf16", "fp16") if p in flags]
        sets += ["compile=true"] if "compile" in flags else []
        sets += ["channels_last=false"] if "nchw" in flags else []
        cfg = assemble(args.task, plugins, sets=sets, flags={"epochs": 2, "device": args.device})
        with tempfile.TemporaryDirectory() as out:
            history = train(cfg, out, plugins=plugins).history
        return {"images_per_s": history[-1]["images_per_s"]}  # the second (warm) epoch
    if case == "reference":
        model, opt = _model(args.width, args.blocks, channels_last=False)
        loader = _reference_loader(images, batch, args.workers)
        it = iter(loader)
        x, y = next(it)
        _step(model, opt, x.flatten(0, 1), y.flatten())
        t0 = time.perf_counter()
        for _ in range(steps):
            x, y = next(it)  # [B, 4, 3, 32, 32]
            _step(model, opt, x.flatten(0, 1), y.flatten())
        return {"images_per_s": steps * batch / (time.perf_counter() - t0)}
    raise SystemExit(f"unknown case {case}")


def run_one_case(args) -> dict:
    """One case in this (child) process, with its peak memory; on CUDA with cudnn.benchmark on
    (fixed shapes: cuDNN picks its fastest algorithms during the warm-up)."""
    import torch

    cuda = args.device.startswith("cuda")
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.cuda.reset_peak_memory_stats()
    result = accuracy_effect(args) if args.case == "accuracy" else run_case(args.case, args)
    result["max_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if cuda:
        result["peak_gpu_memory_mib"] = torch.cuda.max_memory_allocated() / 2**20
        result["cudnn_benchmark"] = True
    return result


def write_json(path: str, doc: dict) -> None:
    """Rewrite ``path`` whole through a temporary file and a rename: a reader never sees half a file."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(doc, indent=2))
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def accuracy_effect(args) -> dict:
    from sslkit.config import assemble
    from sslkit.engine.trainer import train
    from sslkit.plugins import load_plugins

    plugins = load_plugins()
    out = {}
    for precision in ("fp32", "bf16"):
        cfg = assemble(
            "rotation",
            plugins,
            sets=["backbone.width=0.25", "data.subset=3000", f"precision={precision}"],
            flags={"epochs": 2, "device": "cpu"},
        )
        with tempfile.TemporaryDirectory() as d:
            last = train(cfg, d, plugins=plugins).last
        out[precision] = {"heldout_acc": last["heldout_acc"], "heldout_loss": last["heldout_loss"]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the reference")
    parser.add_argument("--data-repeats", type=int, default=20, help="passes over the images in the data-path cases")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--accuracy", action="store_true")
    parser.add_argument("--json", default=None)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the model cases; the data cases stay on the CPU)")
    parser.add_argument("--backbone", default="nin", choices=["nin", "resnet18", "alexnet"])
    parser.add_argument("--task", default="rotation", help="the sslkit cases' task: rotation or context")
    parser.add_argument("--image-size", type=int, default=32, help="training input size (alexnet: 96)")
    parser.add_argument("--case", default=None, help=argparse.SUPPRESS)  # internal: run one case
    args = parser.parse_args()

    if args.case:
        print("RESULT " + json.dumps(run_one_case(args)))
        return

    import torch

    results: dict[str, dict] = {}
    base = [
        sys.executable,
        __file__,
        "--width",
        str(args.width),
        "--blocks",
        str(args.blocks),
        "--batch",
        str(args.batch),
        "--steps",
        str(args.steps),
        "--workers",
        str(args.workers),
        "--data-repeats",
        str(args.data_repeats),
        "--device",
        args.device,
        "--backbone",
        args.backbone,
        "--image-size",
        str(args.image_size),
        "--task",
        args.task,
    ]
    cases = args.cases.split(",") + (["accuracy"] if args.accuracy else [])
    for case in cases:
        proc = subprocess.run([*base, "--case", case], capture_output=True, text=True)
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not line:  # recorded; the other cases still run
            tail = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()][-1:] or [f"exit {proc.returncode}"]
            results[case] = {"error": tail[0][:300]}
            print(f"case {case} failed:\n{proc.stderr[-2000:]}", file=sys.stderr, flush=True)
            if args.json:
                write_json(
                    args.json, {"config": vars(args), "torch": torch.__version__, "results": results, "ratios": {}}
                )
            continue
        results[case] = json.loads(line[0][7:])
        print(f"{case:15s} {json.dumps(results[case])}", flush=True)
        if args.json:  # after every case: a run killed later keeps this one
            write_json(args.json, {"config": vars(args), "torch": torch.__version__, "results": results, "ratios": {}})

    def ratio(a: str, b: str) -> float | None:
        if "images_per_s" in results.get(a, {}) and "images_per_s" in results.get(b, {}):
            return results[a]["images_per_s"] / results[b]["images_per_s"]
        return None

    ratios = {
        "data path: sslkit / reference (target >= 10)": ratio("data_sslkit", "data_reference"),
        "train step: sslkit / compute ceiling (target >= 0.9)": ratio("sslkit", "ceiling"),
        "train step bf16: sslkit_bf16 / ceiling_bf16 (target >= 0.9)": ratio("sslkit_bf16", "ceiling_bf16"),
        "end to end: sslkit fp32 / reference (target >= 1.3)": ratio("sslkit", "reference"),
        "end to end: sslkit bf16 / reference (target >= 2)": ratio("sslkit_bf16", "reference"),
    }
    what = f"NIN-{args.blocks} width {args.width}" if args.backbone == "nin" else args.backbone
    what = f"{args.task} task (sslkit cases), {what}" if args.task != "rotation" else what
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"{torch.get_num_threads()} threads"
    print(
        f"\n{what} at {args.image_size} px, batch {args.batch} images (x4 rotations), {where}, torch "
        f"{torch.__version__}"
    )
    print(f"{'case':16s}{'images/s':>10s}{'samples/s':>11s}{'max RSS MiB':>13s}")
    for case, r in results.items():
        if "images_per_s" in r:
            print(f"{case:16s}{r['images_per_s']:10.1f}{4 * r['images_per_s']:11.1f}{r['max_rss_mib']:13.0f}")
    for name, value in ratios.items():
        if value is not None:
            print(f"{name}: {value:.2f}x")
    if "accuracy" in results:
        a = results["accuracy"]
        print(
            f"bf16 accuracy effect (width 0.25, 2 epochs, sample): held-out rotation acc fp32 "
            f"{a['fp32']['heldout_acc']:.3f} vs bf16 {a['bf16']['heldout_acc']:.3f}"
        )
    if args.json:
        write_json(
            args.json,
            {
                "config": vars(args),
                "torch": torch.__version__,
                "results": results,
                "ratios": {k: v for k, v in ratios.items() if v is not None},
            },
        )


if __name__ == "__main__":
    main()
