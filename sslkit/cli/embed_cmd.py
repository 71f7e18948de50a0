"""``sslkit embed`` and ``sslkit neighbors``: run an exported encoder on images, without torch."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import typer

from ..errors import ConfigError

# Fixed choices (typer validates them); onnxruntime provider names are for the Python API.
Provider = Literal["auto", "cuda", "tensorrt", "cpu"]


def _console():
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True)


def register(app: typer.Typer) -> None:
    @app.command("embed")
    def embed_command(
        model: Path = typer.Argument(..., help="Encoder written by 'sslkit export' (.onnx)."),
        images: list[Path] = typer.Argument(
            ..., help="Image files and/or folders (searched recursively), or one packed sslkit store."
        ),
        out: Path = typer.Option(
            Path("embeddings.npy"), "--out", "-o", help="Embeddings .npy; the file index and a .json go beside it."
        ),
        batch_size: int = typer.Option(256, "--batch-size", min=1, help="Images per onnxruntime call."),
        provider: Provider = typer.Option(
            "auto",
            "--provider",
            help="auto: CUDA on a machine with an NVIDIA GPU, else the CPU; cuda/tensorrt: fail if it does not start "
            "(TensorRT only when asked: it builds an engine per input shape).",
        ),
        device_id: int = typer.Option(
            0, "--device-id", min=0, help="GPU ordinal among the GPUs this process sees (CUDA_VISIBLE_DEVICES)."
        ),
        threads: int | None = typer.Option(
            None, "--threads", min=1, help="onnxruntime intra-op threads (default: all cores)."
        ),
        workers: int | None = typer.Option(
            None, "--decode-threads", min=1, help="Image-decoding threads (default: up to 8)."
        ),
        restart: bool = typer.Option(
            False, "--restart", help="Ignore the progress of an unfinished earlier run into the same --out."
        ),
    ) -> None:
        """Embed images with an exported encoder: one row per readable image, written as it goes
        (a re-run continues an interrupted one)."""
        from ..files import OutputLock

        if out.suffix != ".npy":
            raise ConfigError(f"-o '{out}': give a .npy file name, e.g. embeddings.npy")
        with OutputLock(out, "embedding", folder=False):  # before the encoder starts: a second writer fails at once
            _embed(model, images, out, batch_size, provider, device_id, threads, workers, restart)

    @app.command("neighbors")
    def neighbors_command(
        embeddings: Path = typer.Argument(..., help="The .npy written by 'sslkit embed'."),
        queries: list[Path] = typer.Argument(
            None, help="Query images (files or folders); images in the collection use their stored rows."
        ),
        random_queries: int = typer.Option(
            0,
            "--random",
            "-r",
            min=0,
            help="Also draw this many queries at random from the collection (default: 8 when no QUERIES).",
        ),
        k: int = typer.Option(8, "--neighbors", min=1, max=64, help="Neighbours per query."),
        out: Path = typer.Option(Path("neighbors.png"), "--out", "-o", help="PNG grid to write."),
        model: Path | None = typer.Option(
            None, "--model", help="Encoder for queries outside the collection (default: the one that embedded it)."
        ),
        provider: Provider = typer.Option("auto", "--provider", help="As for 'sslkit embed'."),
        device_id: int = typer.Option(0, "--device-id", min=0, help="As for 'sslkit embed'."),
        tile: int = typer.Option(64, "--tile", min=16, max=512, help="Pixels per image in the grid."),
        seed: int = typer.Option(0, "--seed", help="Which random queries."),
        center: bool = typer.Option(
            True,
            "--center/--no-center",
            help="Subtract the collection's mean embedding before the cosine (ReLU features share one direction).",
        ),
    ) -> None:
        """Nearest neighbours (cosine) of query images in an embedded collection, saved as a PNG grid."""
        from ..files import OutputLock

        with OutputLock(out, "neighbours grid", folder=False):
            _neighbors(
                embeddings, queries or [], random_queries, k, out, model, provider, device_id, tile, seed, center
            )


def _embed(
    model: Path,
    images: list[Path],
    out: Path,
    batch_size: int,
    provider: str,
    device_id: int,
    threads: int | None,
    workers: int | None,
    restart: bool,
) -> None:
    from ..deploy import OnnxEncoder
    from ..embed_stream import embed_to_disk, open_images
    from ..progress import CountBar

    console = _console()
    encoder = OnnxEncoder(model, provider, threads, device_id)
    source = open_images(images)
    info = encoder.info
    # A GPU that is here but unusable was already reported as a warning; say why auto is on the CPU otherwise.
    note = f" ({encoder.report.note})" if encoder.report.note and not encoder.report.fallback else ""
    console.print(
        f"{len(source)} images ({source.description}) -> {info.backbone} '{info.layer}' ({info.pool}) -> "
        f"[{', '.join(map(str, info.output_shape))}] on {encoder.provider}{note}",
        markup=False,
        highlight=False,
    )
    with CountBar("embedding", console, transient=False) as bar:

        def progress(done: int, total: int) -> None:
            if bar.first is None and done:  # the images an earlier run already embedded
                bar.console.print(f"resuming after {done} of {total} images already embedded", highlight=False)
            bar.update(done, total)

        result = embed_to_disk(
            encoder,
            source,
            out,
            batch_size=batch_size,
            workers=workers,
            restart=restart,
            meta={"model": str(model.resolve())},
            progress=progress,
            hold_lock=False,  # held by the command
        )
    paths, rate = result.paths, (result.total - result.resumed_at) / max(result.seconds, 1e-9)
    console.print(
        f"wrote {paths[0]} [{result.count}, {', '.join(map(str, info.output_shape))}] float32, index "
        f"{paths[1].name}, "
        f"info {paths[2].name}; {rate:.0f} images/s on {encoder.provider}",
        markup=False,
        highlight=False,
    )
    if result.skipped:
        shown = ", ".join(result.skipped[:5]) + (
            f" and {len(result.skipped) - 5} more" if len(result.skipped) > 5 else ""
        )
        console.print(
            f"[yellow]skipped {len(result.skipped)} unreadable image(s)[/] (listed in {paths[2].name}): {shown}",
            highlight=False,
        )


def _neighbors(
    embeddings: Path,
    queries: list[Path],
    random_queries: int,
    k: int,
    out: Path,
    model: Path | None,
    provider: str,
    device_id: int,
    tile: int,
    seed: int,
    center: bool,
) -> None:
    import numpy as np

    from ..deploy import OnnxEncoder, list_images
    from ..files import atomic_write
    from ..retrieval import cosine_neighbors, load_collection, neighbor_grid

    console = _console()
    coll = load_collection(embeddings)
    query_files = list_images(queries) if queries else []
    n_random = random_queries or (0 if query_files else 8)
    row_of = {p.resolve(): i for i, p in enumerate(coll.files)}
    own: list[int | None] = [row_of.get(p.resolve()) for p in query_files]
    outside = [p for p, r in zip(query_files, own, strict=True) if r is None]
    vectors = np.zeros((len(query_files), *coll.embeddings.shape[1:]), np.float32)
    if outside:
        encoder = OnnxEncoder(model or Path(coll.meta.get("model", "")), provider, device_id=device_id)
        found = encoder.embed([str(p) for p in outside])
        if found.shape[1:] != coll.embeddings.shape[1:]:
            raise ConfigError(
                f"--model gives features {list(found.shape[1:])}, the collection holds "
                f"{list(coll.embeddings.shape[1:])}; use the encoder that embedded it"
            )
        vectors[[i for i, r in enumerate(own) if r is None]] = found
    for i, r in enumerate(own):
        if r is not None:
            vectors[i] = coll.embeddings[r]
    if n_random:
        picks = np.random.default_rng(seed).choice(len(coll.files), size=min(n_random, len(coll.files)), replace=False)
        query_files += [coll.files[i] for i in picks]
        own += [int(i) for i in picks]
        vectors = np.concatenate([vectors, coll.embeddings[picks]])
    idx, sims = cosine_neighbors(coll.embeddings, vectors, k, exclude=own, center=center)
    rows = [[coll.files[j] for j in row] for row in idx]
    image = neighbor_grid(query_files, rows, sims, tile=tile)
    atomic_write(out, lambda tmp: image.save(tmp, format="PNG"))
    root = Path(coll.meta.get("root", "."))

    def name(p: Path) -> str:
        return p.relative_to(root).as_posix() if p.is_relative_to(root) else str(p)

    for q, row, s in zip(query_files, rows, sims, strict=True):
        console.print(
            f"{name(q)}: "
            + ", ".join(f"{name(p)} {v:.3f}" for p, v in zip(row[:4], s[:4], strict=True))
            + (" ..." if len(row) > 4 else ""),
            markup=False,
            highlight=False,
        )
    console.print(
        f"wrote {out}: {len(query_files)} queries x {idx.shape[1]} neighbours from {len(coll.files)} images",
        highlight=False,
    )
