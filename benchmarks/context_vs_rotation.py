"""Per-step training cost of context prediction vs rotation on the same backbone and batch.

One optimizer step = task.prepare (pretext samples on the device) + forward + backward + SGD,
on a batch of B normalised 32x32 images (random values: the cost does not depend on content).
Variants are timed in interleaved rounds, so a machine shared with other work slows all of them
alike; the median round counts. On a busy CPU use ``--threads 1``: with more threads than free
cores, OpenMP barriers make small-kernel workloads (context's 8x8 patches) pathologically slow.
Prints a table and the ratio; ``--json`` writes the figures.

    python benchmarks/context_vs_rotation.py --backbone nin --set width=0.25 --batch 128
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from sslkit import create_backbone, create_task, load_plugins
from sslkit.config import parse_sets

VARIANTS = {
    "rotation (4 rotations)": ("rotation", {}),
    "context (shared centre)": ("context", {}),
    "context (centre per pair)": ("context", {"share_centre": False}),
}


def build(plugins, task_name, task_opts, backbone_name, backbone_opts, device):
    torch.manual_seed(0)
    backbone = create_backbone(backbone_name, plugins, **backbone_opts).to(device)
    task = create_task(task_name, backbone, plugins, **task_opts).to(device)
    params = list(backbone.parameters()) + list(task.parameters())
    return backbone, task, torch.optim.SGD(params, lr=0.01, momentum=0.9)


def step(backbone, task, optimizer, images, generator) -> int:
    inputs, targets = task.prepare(images, generator)
    loss = task.loss(task(backbone, inputs), targets)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return int(targets.shape[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="nin")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="backbone option KEY=VALUE")
    ap.add_argument("--batch", type=int, default=128, help="images per step")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=3, help="steps per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads (1 is robust on a shared machine: no spinning OpenMP barriers)",
    )
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    plugins = load_plugins()
    backbone_opts = parse_sets(args.sets)
    images = torch.randn(args.batch, 3, args.size, args.size, device=device)
    models = {name: build(plugins, t, o, args.backbone, backbone_opts, device) for name, (t, o) in VARIANTS.items()}
    samples = {}
    for name, (b, t, opt) in models.items():  # warm-up (allocator, kernels)
        samples[name] = step(b, t, opt, images, torch.Generator(device=device).manual_seed(0))
    times: dict[str, list[float]] = {name: [] for name in models}
    for r in range(args.rounds):
        for name, (b, t, opt) in models.items():
            g = torch.Generator(device=device).manual_seed(r)
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(args.steps):
                step(b, t, opt, images, g)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append((time.perf_counter() - t0) / args.steps)

    rows = []
    for name, ts in times.items():
        sec = statistics.median(ts)
        rows.append(
            {
                "variant": name,
                "seconds_per_step": sec,
                "images_per_s": args.batch / sec,
                "samples_per_step": samples[name],
                "samples_per_s": samples[name] / sec,
            }
        )
    threads = torch.get_num_threads()
    print(
        f"backbone {args.backbone} {backbone_opts or ''}, batch {args.batch} images of {args.size}x{args.size}, "
        f"{device} ({threads} threads), median of {args.rounds} rounds x {args.steps} steps"
    )
    print(f"{'variant':28s} {'s/step':>8s} {'images/s':>9s} {'samples/step':>13s} {'samples/s':>10s}")
    for row in rows:
        print(
            f"{row['variant']:28s} {row['seconds_per_step']:8.3f} {row['images_per_s']:9.1f} "
            f"{row['samples_per_step']:13d} {row['samples_per_s']:10.1f}"
        )
    base = rows[0]["images_per_s"]
    for row in rows[1:]:
        row["images_per_s_vs_rotation"] = row["images_per_s"] / base
        print(f"ratio images/s {row['variant']} / rotation: {row['images_per_s_vs_rotation']:.2f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"args": vars(args), "device": str(device), "threads": threads, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
