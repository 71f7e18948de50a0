"""``sslkit data pack|info|verify``: packed image stores for collections too big or too mixed for memory."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import typer

Encoding = Literal["auto", "raw", "jpeg"]  # typer shows the choices in --help and rejects others


def _console():
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True)


def _sizes_line(sizes: dict) -> str:
    """ "all 32x32 (W x H)", or each side's range: "width 30-783 px, height 40-586 px" (the smallest
    width and the smallest height may come from different images)."""
    (h_lo, w_lo), (h_hi, w_hi) = sizes["min"], sizes["max"]
    if sizes["uniform"]:
        return f"all {w_lo}x{h_lo} (W x H)"
    return f"width {w_lo}-{w_hi} px, height {h_lo}-{h_hi} px"


def _info_lines(manifest: dict) -> Iterator[str]:
    shape = _sizes_line(manifest["sizes"])
    total = sum(s["bytes"] for s in manifest["shards"])
    yield (
        f"images: {manifest['images']:,} in {len(manifest['shards'])} shard(s), {total / 1e6:.1f} MB, "
        f"{manifest['encoding']}"
    )
    yield f"sizes: {shape}"
    yield (
        f"mean: {', '.join(f'{v:.4f}' for v in manifest['mean'])}   std: "
        f"{', '.join(f'{v:.4f}' for v in manifest['std'])}"
    )
    source = manifest["source"]
    yield (
        f"source: {source['kind']} {source['where']} ({manifest['source_images']:,} files: {manifest['images']:,} "
        f"images packed, {manifest['skipped_count']:,} unreadable and skipped)"
    )
    o = manifest["options"]
    yield (
        f"options: encoding {o['encoding']}, max side {o['max_side']}, quality {o['quality']}, shard size "
        f"{o['shard_size'] / 2**20:g} MB"
    )
    yield f"skipped: {manifest['skipped_count']} unreadable file(s), not counted among the images"
    for s in manifest["skipped"][:10]:
        yield f"  {s['file']}: {s['reason']}"
    if manifest["skipped_count"] > 10:
        yield f"  ... and {manifest['skipped_count'] - 10} more (manifest.json lists all)"


def register(app: typer.Typer) -> None:
    data = typer.Typer(
        help="Packed image stores: pack a folder, list file or dataset; inspect; verify.", no_args_is_help=True
    )
    app.add_typer(data, name="data")

    @data.command("pack")
    def pack_command(
        ctx: typer.Context,
        source: str = typer.Argument(
            ...,
            help="Folder of images (class sub-folders become labels), list file (PATH[<tab>LABEL] per line) or "
            "dataset name.",
        ),
        out: Path = typer.Option(
            ...,
            "--out",
            "-o",
            help="Store folder to write (new or empty; an unfinished pack of the same source resumes).",
        ),
        encoding: Encoding = typer.Option(
            "auto", "--encoding", help="auto: raw pixels up to 64 px, else JPEG; raw: .npy; jpeg: re-encoded JPEG."
        ),
        max_side: int | None = typer.Option(None, "--max-side", help="Cap the short side at N pixels (aspect kept)."),
        quality: int = typer.Option(90, "--quality", help="JPEG quality 1..100."),
        shard_size: float = typer.Option(256, "--shard-size", help="Shard size in MB (a positive number)."),
        workers: int | None = typer.Option(
            None, "--workers", min=0, help="Decoding processes (default: CPU count; 0: none)."
        ),
    ) -> None:
        """Pack images into tar shards with an index (readable by webdataset and DALI)."""
        from ..data.store import pack
        from ..data.store.packer import shard_bytes
        from ..plugins import load_plugins
        from ..progress import CountBar

        shard_size_bytes = shard_bytes(shard_size)  # nan, inf, 0, negative: one line before any work
        console = _console()
        plugins = None if Path(source).exists() else load_plugins(ctx.obj["plugins"])
        t0 = time.perf_counter()
        with CountBar("packing", _console()) as bar:
            manifest = pack(
                source,
                out,
                encoding=encoding,
                max_side=max_side,
                quality=quality,
                shard_size=shard_size_bytes,
                workers=workers,
                on_progress=bar.update,
                plugins=plugins,
            )
        seconds = time.perf_counter() - t0
        console.print(
            f"wrote {out}: {manifest['images']:,} images ({manifest['encoding']}) in {len(manifest['shards'])} "
            "shard(s), "
            f"{manifest['skipped_count']} skipped; {seconds:.1f}s",
            markup=False,
            highlight=False,
        )
        for s in manifest["skipped"][:5]:
            console.print(f"  skipped {s['file']}: {s['reason']}", markup=False, highlight=False)

    @data.command("info")
    def info_command(store: Path = typer.Argument(..., help="Store folder written by 'sslkit data pack'.")) -> None:
        """What a store holds: counts, classes, sizes, encoding, mean/std, skipped files."""
        import numpy as np

        from ..data.store import Store

        s = Store.open(store)
        typer.echo(s.description)
        for line in _info_lines(s.manifest):
            typer.echo(line)
        if s.classes:
            counts = np.bincount(s.labels, minlength=len(s.classes))
            typer.echo(
                f"classes ({len(s.classes)}): "
                + ", ".join(f"{c} {n}" for c, n in zip(s.classes, counts.tolist(), strict=False))
            )
        else:
            typer.echo("classes: none (unlabelled)")

    @data.command("verify")
    def verify_command(store: Path = typer.Argument(..., help="Store folder written by 'sslkit data pack'.")) -> None:
        """Check every shard and index file against the manifest's sha256 (exit 2 naming the first bad one)."""
        from ..data.store import verify
        from ..progress import CountBar

        with CountBar("verifying", _console()) as bar:
            manifest = verify(store, on_progress=bar.update)
        typer.echo(
            f"ok: {store}: {len(manifest['shards'])} shard(s) and the index match the manifest "
            f"({manifest['images']:,} images)"
        )
