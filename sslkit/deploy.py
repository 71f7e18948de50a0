"""Run an exported encoder without PyTorch: numpy, Pillow and onnxruntime only.

    enc = OnnxEncoder("encoder.onnx")             # CUDA when it works, else CPU
    enc.provider                                  # the provider that actually runs
    x = enc.embed_files(["a.jpg", "b.png"]).embeddings   # [2, D] float32

The file's ``metadata_props`` (written by ``sslkit export``) say how to preprocess: resize the
shorter side and centre-crop to the training size (bicubic, as sslkit's folder loader), convert
to RGB, divide by 255, subtract the mean and divide by the std per channel, NCHW float32.

This module must stay importable without torch (a test imports it with torch blocked): it
imports nothing from sslkit but :mod:`sslkit.errors`.
"""

from __future__ import annotations

import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps

from .errors import DeployError

log = logging.getLogger(__name__)

FORMAT = "sslkit.encoder/1"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")
CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"
PROVIDER_ALIASES = {"cpu": CPU, "cuda": CUDA, "tensorrt": "TensorrtExecutionProvider", "dml": "DmlExecutionProvider",
                    "coreml": "CoreMLExecutionProvider", "rocm": "ROCMExecutionProvider", "openvino": "OpenVINOExecutionProvider"}
# onnxruntime's logger severities: 0 verbose .. 2 warning (its default) .. 4 fatal.
ORT_DEFAULT_SEVERITY, ORT_FATAL = 2, 4
REQUIRED = ("input_name", "input_shape", "mean", "std", "output_name", "output_shape", "layer", "pool")


# ---------------------------------------------------------------------------------------------
# Images


def list_images(paths: Iterable[str | Path]) -> list[Path]:
    """Image files among ``paths``; folders are searched recursively (sorted, hidden files skipped)."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(
                Path(d) / f for d, _, names in os.walk(p, followlinks=True)
                for f in names if f.lower().endswith(IMAGE_SUFFIXES) and not f.startswith(".")
            )
            if not found:
                raise DeployError(f"no images in folder '{p}' (looked for {', '.join(IMAGE_SUFFIXES)})")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise DeployError(f"no such image file or folder: '{p}'")
    return files


def fit(image: Image.Image, shape: Sequence[int]) -> np.ndarray:
    """A PIL image -> uint8 [C, H, W]: converted, shorter side resized and centre-cropped to H x W."""
    c, h, w = shape
    image = image.convert("L" if c == 1 else "RGB")
    if image.size != (w, h):
        image = ImageOps.fit(image, (w, h), Image.Resampling.BICUBIC)
    a = np.asarray(image, dtype=np.uint8)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def decode(path: str | Path, shape: Sequence[int]) -> np.ndarray | None:
    """An image file -> uint8 [C, H, W], or None when it cannot be read."""
    try:
        with Image.open(path) as im:
            return fit(im, shape)
    except Exception:  # any decoder failure means "unreadable": the caller skips and lists it
        return None


def normalize(batch: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """uint8 [B, C, H, W] -> float32 (x / 255 - mean) / std, as sslkit's training loop."""
    m = np.asarray(mean, dtype=np.float32).reshape(1, -1, 1, 1)
    s = np.asarray(std, dtype=np.float32).reshape(1, -1, 1, 1)
    return ((batch.astype(np.float32) / np.float32(255)) - m) / s


def preprocess(
    images: Sequence[str | Path | Image.Image | np.ndarray], shape: Sequence[int],
    mean: Sequence[float], std: Sequence[float],
) -> np.ndarray:
    """Files, PIL images or uint8 [C, H, W] arrays -> the encoder's input [B, C, H, W] float32."""
    arrays = []
    for item in images:
        if isinstance(item, np.ndarray):
            a = item
        elif isinstance(item, Image.Image):
            a = fit(item, shape)
        else:
            a = decode(item, shape)
            if a is None:
                raise DeployError(f"cannot read image '{item}'")
        if a.shape != tuple(shape) or a.dtype != np.uint8:
            raise DeployError(f"image array of shape {a.shape} {a.dtype}: expected uint8 {tuple(shape)}")
        arrays.append(a)
    return normalize(np.stack(arrays), mean, std)


# ---------------------------------------------------------------------------------------------
# Sessions


def _resolve(provider: str | None) -> tuple[list[str], bool]:
    """(providers to ask for, whether the first one is optional)."""
    available = ort.get_available_providers()
    if provider in (None, "", "auto"):
        return ([CUDA] if CUDA in available else []) + [CPU], True
    name = PROVIDER_ALIASES.get(provider.lower(), provider)
    if name not in available:
        raise DeployError(
            f"provider '{provider}' is not in this onnxruntime build (available: {', '.join(available)}); "
            "use --provider cpu, or install onnxruntime-gpu for cuda"
        )
    return [name] if name == CPU else [name, CPU], False


def create_session(path: str | Path, provider: str | None = None, threads: int | None = None) -> ort.InferenceSession:
    """An onnxruntime session on ``provider`` (default: CUDA when it starts, else CPU).

    In the default mode, onnxruntime-gpu without usable CUDA libraries would print errors from
    C++ while it falls back to the CPU; its logger is set to fatal-only while the session is
    created, then back to onnxruntime's default (warning). A forced provider keeps the log
    (the user asked for it, and the log says what is missing) and fails if it did not start.
    """
    path = Path(path)
    if not path.is_file():
        raise DeployError(f"no encoder file at '{path}': give the .onnx file written by 'sslkit export'")
    wanted, optional = _resolve(provider)
    options = ort.SessionOptions()
    options.log_severity_level = 3  # this session's own messages: errors only
    if threads:
        options.intra_op_num_threads = threads
    quiet = optional and wanted[0] != CPU
    if quiet:
        ort.set_default_logger_severity(ORT_FATAL)
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=wanted)
    except Exception as exc:  # onnxruntime raises its own types (InvalidProtobuf, Fail, ...)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DeployError(f"cannot load '{path}' as an ONNX model ({first[:200]}); re-export it with 'sslkit export'") from None
    finally:
        if quiet:
            ort.set_default_logger_severity(ORT_DEFAULT_SEVERITY)
    active = session.get_providers()
    if not optional and active[0] != wanted[0]:
        raise DeployError(
            f"provider '{provider}' did not start (onnxruntime fell back to {active[0]}; its log above names the "
            "missing library); install what it needs or use --provider cpu"
        )
    if optional and wanted[0] != CPU and active[0] == CPU:
        log.info("%s did not start; running on the CPU", wanted[0])
    return session


# ---------------------------------------------------------------------------------------------
# Encoders


@dataclass(frozen=True)
class EncoderInfo:
    """The metadata ``sslkit export`` writes, parsed."""

    input_name: str
    input_shape: tuple[int, int, int]  # (C, H, W)
    channel_order: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    output_name: str
    output_shape: tuple[int, ...]  # per image
    layer: str
    pool: str
    dtype: str
    task: str
    backbone: str
    sslkit_version: str
    config: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_metadata(cls, meta: dict[str, str], path: Path) -> "EncoderInfo":
        missing = [k for k in REQUIRED if k not in meta]
        if missing:
            raise DeployError(
                f"'{path}' is not an sslkit encoder (metadata {', '.join(missing)} missing); export it with 'sslkit export'"
            )
        try:
            return cls(
                input_name=meta["input_name"], input_shape=tuple(json.loads(meta["input_shape"])),
                channel_order=meta.get("channel_order", "RGB"), mean=tuple(json.loads(meta["mean"])),
                std=tuple(json.loads(meta["std"])), output_name=meta["output_name"],
                output_shape=tuple(json.loads(meta["output_shape"])), layer=meta["layer"], pool=meta["pool"],
                dtype=meta.get("dtype", "float32"), task=meta.get("task", ""), backbone=meta.get("backbone", ""),
                sslkit_version=meta.get("sslkit_version", ""), config=json.loads(meta.get("config", "{}")), raw=dict(meta),
            )
        except (ValueError, TypeError) as exc:
            raise DeployError(f"'{path}': unreadable sslkit metadata ({exc}); re-export it with 'sslkit export'") from None


@dataclass
class Embeddings:
    embeddings: np.ndarray  # [N, *output_shape] float32, in the order of ``files``
    files: list[Path]
    skipped: list[Path]  # unreadable images, not embedded


class OnnxEncoder:
    """An exported encoder: preprocessing from its metadata, batched inference, the provider used."""

    def __init__(self, path: str | Path, provider: str | None = None, threads: int | None = None) -> None:
        self.path = Path(path)
        self.session = create_session(self.path, provider, threads)
        meta = dict(self.session.get_modelmeta().custom_metadata_map)
        self.info = EncoderInfo.from_metadata(meta, self.path)
        inputs = self.session.get_inputs()
        if not inputs or inputs[0].name != self.info.input_name:
            raise DeployError(f"'{self.path}': its input is not '{self.info.input_name}' as its metadata says; re-export it")
        self._input_type = np.float16 if inputs[0].type == "tensor(float16)" else np.float32

    @property
    def provider(self) -> str:
        """The execution provider that runs this encoder (after any fallback)."""
        return self.session.get_providers()[0]

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Preprocessed images [B, C, H, W] -> features [B, *output_shape] float32."""
        out = self.session.run([self.info.output_name], {self.info.input_name: batch.astype(self._input_type, copy=False)})[0]
        return out.astype(np.float32, copy=False)

    def preprocess(self, images: Sequence[str | Path | Image.Image | np.ndarray]) -> np.ndarray:
        return preprocess(images, self.info.input_shape, self.info.mean, self.info.std)

    def embed(self, images: Sequence[str | Path | Image.Image | np.ndarray], batch_size: int = 256) -> np.ndarray:
        """Images (files, PIL images, uint8 arrays) -> embeddings; an unreadable file is an error."""
        parts = [self(self.preprocess(images[i : i + batch_size])) for i in range(0, len(images), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, *self.info.output_shape), np.float32)

    def embed_files(
        self, files: Sequence[str | Path], batch_size: int = 256, workers: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> Embeddings:
        """Embed image files in batches; unreadable ones are skipped and listed.

        Decoding (Pillow, threads) of the next batch overlaps inference on this one;
        ``progress(done, total)`` is called after each batch.
        """
        files = [Path(f) for f in files]
        shape = self.info.input_shape
        kept: list[Path] = []
        skipped: list[Path] = []
        parts: list[np.ndarray] = []
        chunks = [files[i : i + batch_size] for i in range(0, len(files), batch_size)]
        workers = workers or min(8, os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            def submit(chunk: list[Path]):
                return pool.map(lambda f: decode(f, shape), chunk)

            pending = submit(chunks[0]) if chunks else None
            done = 0
            for i, chunk in enumerate(chunks):
                arrays = list(pending)  # type: ignore[arg-type]
                pending = submit(chunks[i + 1]) if i + 1 < len(chunks) else None
                good = [a for a in arrays if a is not None]
                skipped += [f for f, a in zip(chunk, arrays) if a is None]
                if good:
                    kept += [f for f, a in zip(chunk, arrays) if a is not None]
                    parts.append(self(normalize(np.stack(good), self.info.mean, self.info.std)))
                done += len(chunk)
                if progress is not None:
                    progress(done, len(files))
        embeddings = np.concatenate(parts) if parts else np.zeros((0, *self.info.output_shape), np.float32)
        return Embeddings(embeddings, kept, skipped)


def load(path: str | Path, provider: str | None = None, threads: int | None = None) -> OnnxEncoder:
    """``OnnxEncoder(path, provider, threads)``."""
    return OnnxEncoder(path, provider, threads)
