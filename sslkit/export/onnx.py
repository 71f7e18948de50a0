"""Export an encoder to one self-describing ONNX file, verified against PyTorch before it lands.

    run folder -> backbone (eval mode) cut at a stage, pooled -> torch.onnx.export (dynamo,
    dynamic batch, opset OPSET) -> metadata_props -> onnx.checker (full) -> temporary file
    -> onnxruntime vs PyTorch on real images and on random batches of 1 and 7
    -> renamed over the output only if every comparison is within tolerance.

Why the dynamo exporter (``torch.export``) and not the TorchScript one (``dynamo=False``): both
give identical graphs and errors (~1e-7) for the built-in backbones, and the TorchScript one
exports about twice as fast; but ``torch.export`` proves the batch dimension symbolic and fails
loudly when a backbone specialises it, where tracing silently bakes any size a backbone reads as
a Python int into the graph, and the TorchScript exporter is deprecated since PyTorch 2.9. The
verification runs batch sizes 1 and 7 on the written file anyway, so a baked batch cannot pass.

Errors are reported as ``max |onnx - torch|`` and as that divided by ``max |torch|`` (relative to
the scale of the features: element-wise relative error is meaningless for the exact zeros a ReLU
produces).
"""

from __future__ import annotations

import copy
import json
import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import torch
from pydantic import Field

from .. import __version__
from ..errors import DataError, ExportError
from ..files import atomic_write
from ..interfaces import Backbone, Config, Exporter
from ..plugins import Plugins, load_plugins
from ..run import Encoder, LoadedRun, default_layer, load_run, output_shape

log = logging.getLogger(__name__)

FORMAT = "sslkit.encoder/1"
OPSET = 18  # pinned: the dynamo exporter's floor; onnxruntime >= 1.14 and OpenCV >= 4.9 run it
INPUT, OUTPUT = "images", "features"
TOLERANCE = {"float32": 1e-4, "float16": 1e-2}  # max abs error / max abs feature
VERIFY_IMAGES = 16
TWO_GB = 2**31 - 1  # protobuf's limit: bigger models keep their weights in a .data file


@dataclass
class Check:
    """One comparison of onnxruntime with PyTorch."""

    inputs: str  # what was fed: "16 images of ...", "random batch of 7"
    batch: int
    max_abs: float
    rel: float


@dataclass
class ExportResult:
    path: Path
    layer: str
    pool: str
    dtype: str
    output_shape: tuple[int, ...]
    tolerance: float
    checks: list[Check] = field(default_factory=list, repr=False)
    bytes: int = 0
    seconds: float = 0.0
    metadata: dict[str, str] = field(default_factory=dict, repr=False)  # the run's config among them: kBs

    @property
    def worst(self) -> Check:
        return max(self.checks, key=lambda c: c.rel)

    def summary(self) -> list[str]:
        """What ``sslkit export`` prints: the file, its input contract and every verification."""
        m = self.metadata
        c, h, w = json.loads(m["input_shape"])
        return [
            f"wrote {self.path} ({self.bytes / 1e6:.2f} MB, {self.dtype}, opset {m['opset']}): "
            f"{m['backbone']} up to '{self.layer}', pool {self.pool} -> "
            f"[batch, {', '.join(map(str, self.output_shape))}]",
            f"input: [batch, {c}, {h}, {w}] float32, {m['channel_order']}, x/255, mean {m['mean']}, std {m['std']}",
            *(
                f"  verified on {check.inputs}: max abs error {check.max_abs:.2e}, relative {check.rel:.2e}"
                for check in self.checks
            ),
            f"ok: onnxruntime matches PyTorch within {self.tolerance:.0e} (relative to the largest feature); "
            f"{self.seconds:.1f}s",
        ]


def channel_order(channels: int) -> str:
    return {3: "RGB", 1: "L"}.get(channels, f"{channels}-channel")


def build_metadata(
    *,
    input_shape: Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
    layer: str,
    pool: str,
    out_shape: Sequence[int],
    dtype: str,
    task: str,
    backbone: str,
    config: dict[str, Any],
    epoch: int,
) -> dict[str, str]:
    """Everything a consumer needs to preprocess and interpret, as ``metadata_props`` strings."""
    c, h, w = input_shape
    return {
        "sslkit_format": FORMAT,
        "input_name": INPUT,
        "input_shape": json.dumps([c, h, w]),
        "input_size": json.dumps([h, w]),
        "layout": "NCHW",
        "channel_order": channel_order(c),
        "input_dtype": "float32",
        "pixel_scale": "255",
        "mean": json.dumps(list(mean)),
        "std": json.dumps(list(std)),
        "resize": "fit-bicubic",
        "preprocessing": (
            f"resize the shorter side to fit {h}x{w} (bicubic) and centre-crop to {h}x{w}, "
            f"convert to {channel_order(c)}, x / 255, (x - mean) / std per channel, NCHW float32"
        ),
        "layer": layer,
        "pool": pool,
        "output_name": OUTPUT,
        "output_shape": json.dumps(list(out_shape)),
        "dtype": dtype,
        "task": task,
        "backbone": backbone,
        "epoch": str(epoch),
        "sslkit_version": __version__,
        "torch_version": torch.__version__,
        "opset": str(OPSET),
        "config": json.dumps(config, sort_keys=True),
    }


def _to_onnx(encoder: Encoder, input_shape: Sequence[int]):
    """The ONNX ModelProto of ``encoder`` with a dynamic batch dimension."""
    major, minor = (int(p) for p in torch.__version__.split(".")[:2])
    if (major, minor) < (2, 6):  # torch.onnx.export(dynamo=True, external_data=...) arrived in 2.6
        raise ExportError(f"ONNX export needs torch >= 2.6 (this is {torch.__version__}); upgrade torch")
    from torch.export import Dim

    # A batch of 2: torch.export specialises dimensions of size 0 and 1.
    example = torch.randn(2, *input_shape, generator=torch.Generator().manual_seed(0))
    try:
        with warnings.catch_warnings():
            # The exporter warns about its own internals (deprecations in torch.export); the
            # result is checked numerically below, which is what the user needs to know.
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                encoder,
                (example,),
                None,
                input_names=[INPUT],
                output_names=[OUTPUT],
                opset_version=OPSET,
                dynamo=True,
                external_data=False,
                verbose=False,
                dynamic_shapes={"images": {0: Dim("batch", min=1)}},
            )
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise ExportError(
            f"torch.onnx could not export {type(encoder.backbone).__name__} up to '{encoder.layer}' "
            f"({type(exc).__name__}: {first}); the backbone must be traceable by torch.export"
        ) from exc
    assert program is not None  # dynamo=True always returns a program (None is the TorchScript path's)
    return program.model_proto


def _write(model, tmp: Path, final: Path) -> None:
    import onnx

    if model.ByteSize() < TWO_GB:
        onnx.save_model(model, str(tmp))
    else:  # weights go next to the final name; the graph file is renamed into place later
        onnx.save_model(
            model, str(tmp), save_as_external_data=True, all_tensors_to_one_file=True, location=final.name + ".data"
        )


def _session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    # Verification runs on the CPU provider: deterministic, and available everywhere.
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def verify(
    path: Path, reference: Encoder, batches: Sequence[tuple[str, torch.Tensor]], tolerance: float
) -> list[Check]:
    """Run ``path`` in onnxruntime and ``reference`` (float32, eval mode) on every batch."""
    session = _session(path)
    checks = []
    for what, x in batches:
        with torch.no_grad():
            want = reference(x).numpy()
        have = session.run([OUTPUT], {INPUT: x.numpy()})[0]
        if have.shape != want.shape:
            raise ExportError(f"{path}: ONNX output shape {list(have.shape)} != PyTorch {list(want.shape)} on {what}")
        if not np.isfinite(have).all():
            raise ExportError(f"ONNX output has inf/NaN on {what} (float16 overflow?); export without --fp16")
        err = float(np.abs(have.astype(np.float64) - want).max())
        scale = float(np.abs(want).max())
        checks.append(Check(what, x.shape[0], err, err / scale if scale > 0 else err))
    return checks


def _real_images(
    run: LoadedRun, plugins: Plugins, images: Sequence[str | Path] | None, n: int
) -> tuple[str, torch.Tensor] | None:
    """A normalised batch of real images: the given files, else a seeded sample of the run's data."""
    from ..data.augment import normalize

    if images:  # decoded and normalised exactly as sslkit.deploy will do it for the user
        from ..deploy import decode, list_images
        from ..deploy import normalize as normalize_np

        arrays = [a for a in (decode(f, run.input_shape) for f in list_images(images)[: 4 * n]) if a is not None][:n]
        if not arrays:
            raise ExportError("none of the --images could be read; give image files or folders")
        return f"{len(arrays)} given images", torch.from_numpy(normalize_np(np.stack(arrays), run.mean, run.std))
    from ..config import DataConfig
    from ..data.opener import sample_images

    try:
        data = sample_images(DataConfig.model_validate(run.config["data"]), plugins, n)
    except DataError as exc:
        log.warning("verifying on random inputs only: the run's data is not available (%s); pass --images", exc)
        return None
    if tuple(data.images.shape[1:]) != run.input_shape:
        log.warning("verifying on random inputs only: the run's data now has shape %s", tuple(data.images.shape[1:]))
        return None
    x = normalize(data.images, run.mean, run.std)
    return f"{len(data)} images of {data.description}", x


def _check_file(
    tmp: Path, reference: Encoder, batches: Sequence[tuple[str, torch.Tensor]], tolerance: float, dtype: str, out: Path
) -> list[Check]:
    """onnx.checker, then onnxruntime against PyTorch on every batch; an ExportError when either fails."""
    import onnx

    try:
        onnx.checker.check_model(str(tmp), full_check=True)
    except Exception as exc:
        raise ExportError(f"the exported graph fails onnx.checker: {str(exc).splitlines()[0]}") from exc
    checks = verify(tmp, reference, batches, tolerance)
    bad = [c for c in checks if c.rel > tolerance]
    if bad:
        c = bad[0]
        raise ExportError(
            f"verification failed: onnxruntime differs from PyTorch by {c.rel:.2e} relative (max abs "
            f"{c.max_abs:.2e}) on {c.inputs}, above the {dtype} tolerance {tolerance:.0e}; nothing was written to {out}"
        )
    return checks


def export_encoder(
    backbone: Backbone,
    out: str | Path,
    *,
    layer: str,
    input_shape: Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
    pool: str = "avg",
    fp16: bool = False,
    real: tuple[str, torch.Tensor] | None = None,
    task: str = "",
    config: dict[str, Any] | None = None,
    epoch: int = 0,
    tolerance: float | None = None,
) -> ExportResult:
    """Export ``backbone`` (always in eval mode, whatever mode it is in) up to ``layer``.

    ``real``: (description, normalised images) to verify on, besides random batches of 1 and 7.
    Raises :class:`ExportError` (and leaves nothing at ``out``) when verification fails.
    """
    import onnx

    t0 = time.perf_counter()
    out = Path(out)
    input_shape = tuple(int(s) for s in input_shape)
    # A copy in eval mode: BatchNorm must use its running statistics, whatever the caller did.
    reference = Encoder(copy.deepcopy(backbone).cpu().float().eval(), layer, pool).eval()
    exported = Encoder(copy.deepcopy(reference.backbone).half(), layer, pool, half=True).eval() if fp16 else reference
    dtype = "float16" if fp16 else "float32"
    tolerance = TOLERANCE[dtype] if tolerance is None else tolerance
    shape = output_shape(reference, input_shape)
    name = (config or {}).get("backbone", {}).get("name") or type(backbone).__name__
    meta = build_metadata(
        input_shape=input_shape,
        mean=mean,
        std=std,
        layer=reference.layer,
        pool=pool,
        out_shape=shape,
        dtype=dtype,
        task=task,
        backbone=name,
        config=config or {},
        epoch=epoch,
    )
    model = _to_onnx(exported, input_shape)
    onnx.helper.set_model_props(model, meta)
    model.doc_string = f"sslkit encoder: {name} up to {reference.layer}, pool {pool}, {dtype}; see metadata_props"

    generator = torch.Generator().manual_seed(1)
    batches = ([real] if real is not None else []) + [
        (f"random batch of {b}", torch.randn(b, *input_shape, generator=generator)) for b in (1, 7)
    ]
    checks: list[Check] = []
    data_file = out.with_name(out.name + ".data")
    had_data = data_file.exists()

    def write_verified(tmp: Path) -> None:  # the file lands under `out` only if it passes
        _write(model, tmp, out)
        checks.extend(_check_file(tmp, reference, batches, tolerance, dtype, out))

    try:
        atomic_write(out, write_verified)
    except BaseException:
        if data_file.exists() and not had_data:
            data_file.unlink()
        raise
    size = out.stat().st_size + (data_file.stat().st_size if data_file.exists() else 0)
    return ExportResult(
        path=out,
        layer=reference.layer,
        pool=pool,
        dtype=dtype,
        output_shape=shape,
        tolerance=tolerance,
        checks=checks,
        bytes=size,
        seconds=time.perf_counter() - t0,
        metadata=meta,
    )


def export_onnx(
    run: str | Path | LoadedRun,
    out: str | Path,
    *,
    layer: str | None = None,
    pool: str = "avg",
    fp16: bool = False,
    images: Sequence[str | Path] | None = None,
    plugins: Plugins | None = None,
    tolerance: float | None = None,
) -> ExportResult:
    """Export a run's encoder to ``out`` (see the module docstring); ``layer`` defaults to
    ``RUN/probe.json``'s best layer, else the last stage; ``images`` (files or folders) replace
    the run's data for verification."""
    plugins = plugins or load_plugins()
    r = load_run(run, plugins)
    layer = layer or default_layer(r)
    r.backbone.stage(layer)  # fail on a typo before loading any data
    real = _real_images(r, plugins, images, VERIFY_IMAGES)
    return export_encoder(
        r.backbone,
        out,
        layer=layer,
        input_shape=r.input_shape,
        mean=r.mean,
        std=r.std,
        pool=pool,
        fp16=fp16,
        real=real,
        task=r.task,
        config=r.config,
        epoch=r.epoch,
        tolerance=tolerance,
    )


class OnnxOptions(Config):
    layer: str | None = Field(None, description="stage to cut at (default: RUN/probe.json's best_layer, else the last)")
    pool: Literal["avg", "flatten", "none"] = Field(
        "avg", description="avg: B x C global average; flatten: B x C*H*W; none: B x C x H x W maps"
    )
    fp16: bool = Field(False, description="float16 weights and compute (inputs and outputs stay float32)")
    images: tuple[str, ...] = Field((), description="verify on these image files/folders instead of the run's data")


class OnnxExporter(Exporter):
    """One self-describing ONNX file, verified against PyTorch before it is written."""

    Config = OnnxOptions
    file_name = "encoder.onnx"
    description = "the encoder as one verified ONNX file with its preprocessing in the metadata"

    def export(self, run: LoadedRun, out: Path, plugins: Plugins) -> ExportResult:
        o = cast(OnnxOptions, self.config)
        return export_onnx(run, out, layer=o.layer, pool=o.pool, fp16=o.fp16, images=o.images or None, plugins=plugins)
