"""Run an exported encoder without PyTorch: numpy, Pillow and onnxruntime only.

    enc = OnnxEncoder("encoder.onnx")             # CUDA when it works, else CPU
    enc = OnnxEncoder("encoder.onnx", device_id=1)  # the second GPU this process can see
    enc.provider                                  # the provider that actually runs
    x = enc.embed_files(["a.jpg", "b.png"]).embeddings   # [2, D] float32

The file's ``metadata_props`` (written by ``sslkit export``) say how to preprocess: resize the
shorter side and centre-crop to the training size (bicubic, as sslkit's folder loader), convert
to RGB, divide by 255, subtract the mean and divide by the std per channel, NCHW float32.

On a GPU (``provider="cuda"``, or auto on a machine with an NVIDIA GPU) batches go through
onnxruntime's IO binding: the output is allocated on the device and copied back once per batch;
:meth:`OnnxEncoder.run_on_device` takes and returns device-resident ``OrtValue`` s. ``device_id``
is the GPU's ordinal among those the process can see (``CUDA_VISIBLE_DEVICES=3`` and
``device_id=0`` run on physical GPU 3).

Auto mode runs CUDA, never TensorRT: TensorRT builds an engine per input shape (minutes), so the
last, smaller batch of every ``sslkit embed`` would build a second one. TensorRT runs only when
asked for (``provider="tensorrt"``), and then every batch smaller than the largest one seen is
padded up to it, so one engine serves the whole run (engines are cached on disk).

This module must stay importable without torch (a test imports it with torch blocked): it
imports nothing from sslkit but :mod:`sslkit.errors`, :mod:`sslkit.files` and :mod:`sslkit.images`.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.metadata
import io
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from PIL import Image

from . import files as _files
from .errors import DeployError
from .files import IMAGE_SUFFIXES  # noqa: F401  (re-exported: the suffixes embed looks for)
from .images import decode_image, fit_image

log = logging.getLogger(__name__)

FORMAT = "sslkit.encoder/1"
CPU, CUDA, TENSORRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"
GPU_PROVIDERS = (TENSORRT, CUDA)
PROVIDER_ALIASES = {
    "cpu": CPU,
    "cuda": CUDA,
    "tensorrt": TENSORRT,
    "dml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
}
REQUIRED = ("input_name", "input_shape", "mean", "std", "output_name", "output_shape", "layer", "pool")


# ---------------------------------------------------------------------------------------------
# Images


def list_images(paths: Iterable[str | Path]) -> list[Path]:
    """Image files among ``paths``; folders are searched recursively by :func:`sslkit.files.list_images`
    (sorted, hidden files skipped, a symlinked folder walked once: a ``loop -> ..`` link cannot
    repeat or hang the walk)."""
    try:
        return _files.list_images(paths)
    except (FileNotFoundError, LookupError) as exc:
        raise DeployError(str(exc)) from None


def fit(image: Image.Image, shape: Sequence[int]) -> np.ndarray:
    """A PIL image -> uint8 [C, H, W]: converted, shorter side resized and centre-cropped to H x W
    (:func:`sslkit.images.fit_image`, the decoder training and probes use)."""
    c, h, w = shape
    return fit_image(image, (h, w), c)


def decode(path: str | Path, shape: Sequence[int]) -> np.ndarray | None:
    """An image file -> uint8 [C, H, W], or None when it cannot be read."""
    c, h, w = shape
    return decode_image(path, (h, w), c)


def normalize(batch: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """uint8 [B, C, H, W] -> float32 (x / 255 - mean) / std, as sslkit's training loop."""
    m = np.asarray(mean, dtype=np.float32).reshape(1, -1, 1, 1)
    s = np.asarray(std, dtype=np.float32).reshape(1, -1, 1, 1)
    return ((batch.astype(np.float32) / np.float32(255)) - m) / s


def preprocess(
    images: Sequence[str | Path | Image.Image | np.ndarray],
    shape: Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
) -> np.ndarray:
    """Files, PIL images or uint8 [C, H, W] arrays -> the encoder's input [B, C, H, W] float32."""
    arrays = []
    for item in images:
        if isinstance(item, np.ndarray):
            a = item
        elif isinstance(item, Image.Image):
            a = fit(item, shape)
        else:
            decoded = decode(item, shape)
            if decoded is None:
                raise DeployError(f"cannot read image '{item}'")
            a = decoded
        if a.shape != tuple(shape) or a.dtype != np.uint8:
            raise DeployError(f"image array of shape {a.shape} {a.dtype}: expected uint8 {tuple(shape)}")
        arrays.append(a)
    return normalize(np.stack(arrays), mean, std)


# ---------------------------------------------------------------------------------------------
# Sessions
#
# onnxruntime-gpu never fails when CUDA cannot start: it logs to stderr from C++ and silently runs
# on the CPU. So the CUDA path here (1) preloads the CUDA/cuDNN libraries from the nvidia-* wheels
# (onnxruntime >= 1.21: onnxruntime-gpu 1.31 needs CUDA 13, in site-packages/nvidia/cu13/lib), (2)
# captures that C++ log while the session starts, (3) reads back the providers the session really
# has, and turns a fallback into a one-line DeployError (asked for) or a one-line warning (auto, on
# a machine that has an NVIDIA GPU). Without a GPU, auto mode does not try CUDA at all.


def cuda_device_present() -> bool:
    """Whether this machine has an NVIDIA GPU with its driver loaded (no torch, no CUDA libraries)."""
    gpus = Path("/proc/driver/nvidia/gpus")
    if gpus.is_dir() and any(gpus.iterdir()):
        return True
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    try:
        proc = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return False
    return proc.returncode == 0 and "GPU" in proc.stdout


def _installed(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def gpu_build_problem(available: Sequence[str] | None = None) -> str | None:
    """Why this onnxruntime cannot offer CUDA although onnxruntime-gpu was installed, or None.

    ``onnxruntime`` and ``onnxruntime-gpu`` install the same package folder: installing the CPU
    wheel after the GPU one (a dependency pulling in plain onnxruntime) silently replaces it.
    """
    available = list(ort.get_available_providers() if available is None else available)
    gpu, cpu = _installed("onnxruntime-gpu"), _installed("onnxruntime")
    if gpu is None:
        return None
    if CUDA not in available:
        return (
            f"onnxruntime-gpu {gpu} is installed but CUDAExecutionProvider is missing: plain "
            f"onnxruntime{' ' + cpu if cpu else ''} "
            "replaced its files; fix: pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu"
        )
    if cpu is not None:
        return (
            f"both onnxruntime {cpu} and onnxruntime-gpu {gpu} are installed and overwrite each other's files; "
            "fix: pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu"
        )
    return None


def tensorrt_present() -> bool:
    """Whether TensorRT's runtime library (what onnxruntime's TensorRT provider loads) is loadable."""
    names = ("nvinfer_10.dll",) if sys.platform == "win32" else ("libnvinfer.so.10",)
    for name in names:
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            continue
    return False


def preload_cuda_libraries() -> str:
    """Load the CUDA/cuDNN libraries from the nvidia-* wheels before a CUDA session starts
    (onnxruntime's own :func:`onnxruntime.preload_dlls`, where this version has it); returns
    what it reported (it prints the libraries it could not load)."""
    preload = getattr(ort, "preload_dlls", None)
    if preload is None:  # onnxruntime < 1.21: the libraries must be on the loader path
        return ""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            preload()
        except Exception as exc:  # a broken nvidia-* install: the session start below says the rest
            print(f"preload_dlls failed: {exc}")
    return out.getvalue()


@contextlib.contextmanager
def _capture_fd2(into: list[str]):
    """Collect what C++ code writes to file descriptor 2 (onnxruntime's logger) into ``into``."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            into.append(tmp.read().decode("utf-8", "replace"))


def _reason(log_text: str, preload_text: str) -> str:
    """The first useful cause in onnxruntime's log (a library that did not load), one line."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", log_text + "\n" + preload_text)
    for pattern in (
        r"with error: ([^\n]+)",
        r"Failed to load ([^\n]+)",
        r"(Failed to create \w+)",
        r"\[E:onnxruntime[^\]]*\] ([^\n]+)",
    ):
        m = re.search(pattern, text)
        if m:
            return m.group(1).strip()[:200]
    return "no error was logged"


def _fix(reason: str, device: bool) -> str:
    if "nvinfer" in reason:
        return "install TensorRT 10 (libnvinfer) where the loader finds it, or use --provider cuda"
    if not device or "libcuda.so" in reason or "nvcuda" in reason:
        return "no NVIDIA GPU driver on this machine: run on a machine with an NVIDIA GPU, or use --provider cpu"
    cuda = getattr(getattr(getattr(ort, "capi", None), "build_and_package_info", None), "cuda_version", None)
    libraries = f"CUDA {cuda.split('.')[0]} and cuDNN 9" if cuda else "CUDA and cuDNN"
    return (
        f"install the {libraries} libraries onnxruntime-gpu needs: pip install 'sslkit[gpu]' "
        "(onnxruntime-gpu[cuda,cudnn]), or use --provider cpu"
    )


@dataclass(frozen=True)
class SessionReport:
    """What was asked for, what runs, and why anything else did not start."""

    requested: str  # auto, cpu, cuda, tensorrt or a provider name
    providers: tuple[str, ...]  # session.get_providers(): the first one runs the model
    fallback: str | None = None  # one line, also logged as a warning: why a GPU that is here is not used (auto)
    note: str | None = None  # one line: why auto mode runs on the CPU (no GPU here, no GPU build)

    @property
    def provider(self) -> str:
        return self.providers[0]


def _resolve(provider: str | None, available: Sequence[str], device: bool) -> tuple[list[str], bool]:
    """(providers to ask for, whether the GPU ones are optional). Auto takes CUDA, not TensorRT
    (module docstring: engines are built per input shape)."""
    if provider in (None, "", "auto"):
        return ([CUDA] if CUDA in available and device else []) + [CPU], True
    name = PROVIDER_ALIASES.get(provider.lower(), provider)
    if name not in available:
        problem = gpu_build_problem(available) if name in (CUDA, TENSORRT) else None
        raise DeployError(
            problem
            or (
                f"provider '{provider}' is not in this onnxruntime build (available: {', '.join(available)}); "
                "use --provider cpu, or install onnxruntime-gpu for cuda"
            )
        )
    if name == TENSORRT:
        return [TENSORRT, CUDA, CPU], False
    return [name] if name == CPU else [name, CPU], False


def _provider_options(name: str, device_id: int = 0) -> dict[str, Any]:
    if name == TENSORRT:  # engines take minutes to build: cache them beside the user's other caches
        cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sslkit" / "tensorrt"
        cache.mkdir(parents=True, exist_ok=True)
        return {
            "device_id": device_id,
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache),
            "trt_fp16_enable": False,
        }
    if name == CUDA:
        return {"device_id": device_id}
    return {}


def start_session(
    path: str | Path, provider: str | None = None, threads: int | None = None, device_id: int = 0
) -> tuple[ort.InferenceSession, SessionReport]:
    """An onnxruntime session on ``provider`` and a report of the providers that really run.

    ``provider``: ``auto``/None (CUDA on a machine with an NVIDIA GPU, else the CPU), ``cpu``,
    ``cuda``, ``tensorrt`` or an onnxruntime provider name. ``device_id``: the GPU, an ordinal
    among the GPUs this process sees (``CUDA_VISIBLE_DEVICES``). A provider asked for by name
    that does not start raises a one-line :class:`DeployError` with the cause and the fix; in
    auto mode a GPU that is present but unusable gives a one-line warning, and the session runs
    on the CPU.
    """
    path = Path(path)
    if not path.is_file():
        raise DeployError(f"no encoder file at '{path}': give the .onnx file written by 'sslkit export'")
    if device_id < 0:
        raise DeployError(f"device id {device_id}: give a GPU ordinal >= 0 (0 is the first GPU this process sees)")
    available = ort.get_available_providers()
    device = cuda_device_present()
    wanted, optional = _resolve(provider, available, device)
    options = ort.SessionOptions()
    options.log_severity_level = 3  # this session's own messages: errors only
    if threads:
        options.intra_op_num_threads = threads
    gpu = wanted[0] != CPU
    preload = preload_cuda_libraries() if gpu else ""
    logged: list[str] = []
    printed = io.StringIO()  # onnxruntime's Python side prints its "EP Error ... Falling back" banner
    try:
        with _capture_fd2(logged) if gpu else contextlib.nullcontext(), contextlib.redirect_stdout(printed):
            session = ort.InferenceSession(
                str(path), sess_options=options, providers=[(p, _provider_options(p, device_id)) for p in wanted]
            )
    except Exception as exc:  # onnxruntime raises its own types (InvalidProtobuf, Fail, ...)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DeployError(
            f"cannot load '{path}' as an ONNX model ({first[:200]}); re-export it with 'sslkit export'"
        ) from None
    active = tuple(session.get_providers())
    fallback = note = None
    if gpu and active[0] != wanted[0]:
        reason = _reason("".join(logged) + printed.getvalue(), preload)
        what = f"{wanted[0]} did not start ({reason}); onnxruntime fell back to {active[0]}"
        if not optional:
            raise DeployError(f"--provider {provider}: {what}; {_fix(reason, device)}")
        fallback = f"{what}; {_fix(reason, device)}"
        log.warning("%s", fallback)
    elif optional and not gpu:
        problem = gpu_build_problem(available) if device else None
        if problem:
            fallback = f"running on the CPU: {problem}"
            log.warning("%s", fallback)
        note = problem or (
            "no NVIDIA GPU found"
            if not device
            else "this onnxruntime build has no GPU provider (pip install onnxruntime-gpu)"
        )
    return session, SessionReport(provider or "auto", active, fallback, note)


def create_session(
    path: str | Path, provider: str | None = None, threads: int | None = None, device_id: int = 0
) -> ort.InferenceSession:
    """:func:`start_session` without the report."""
    return start_session(path, provider, threads, device_id)[0]


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
    def from_metadata(cls, meta: dict[str, str], path: Path) -> EncoderInfo:
        missing = [k for k in REQUIRED if k not in meta]
        if missing:
            raise DeployError(
                f"'{path}' is not an sslkit encoder (metadata {', '.join(missing)} missing); export it with "
                "'sslkit export'"
            )
        try:
            return cls(
                input_name=meta["input_name"],
                input_shape=tuple(json.loads(meta["input_shape"])),
                channel_order=meta.get("channel_order", "RGB"),
                mean=tuple(json.loads(meta["mean"])),
                std=tuple(json.loads(meta["std"])),
                output_name=meta["output_name"],
                output_shape=tuple(json.loads(meta["output_shape"])),
                layer=meta["layer"],
                pool=meta["pool"],
                dtype=meta.get("dtype", "float32"),
                task=meta.get("task", ""),
                backbone=meta.get("backbone", ""),
                sslkit_version=meta.get("sslkit_version", ""),
                config=json.loads(meta.get("config", "{}")),
                raw=dict(meta),
            )
        except (ValueError, TypeError) as exc:
            raise DeployError(
                f"'{path}': unreadable sslkit metadata ({exc}); re-export it with 'sslkit export'"
            ) from None


@dataclass
class Embeddings:
    embeddings: np.ndarray  # [N, *output_shape] float32, in the order of ``files``
    files: list[Path]
    skipped: list[Path]  # unreadable images, not embedded


class OnnxEncoder:
    """An exported encoder: preprocessing from its metadata, batched inference, the provider used."""

    def __init__(
        self, path: str | Path, provider: str | None = None, threads: int | None = None, device_id: int = 0
    ) -> None:
        self.path = Path(path)
        self.device_id = device_id
        self.session, self.report = start_session(self.path, provider, threads, device_id)
        self._engine_batch = 0  # TensorRT: the largest batch so far; smaller ones are padded up to it
        meta = dict(self.session.get_modelmeta().custom_metadata_map)
        self.info = EncoderInfo.from_metadata(meta, self.path)
        inputs = self.session.get_inputs()
        if not inputs or inputs[0].name != self.info.input_name:
            raise DeployError(
                f"'{self.path}': its input is not '{self.info.input_name}' as its metadata says; re-export it"
            )
        self._input_type = np.float16 if inputs[0].type == "tensor(float16)" else np.float32
        if (self.info.dtype == "float16" or "float16" in inputs[0].type) and self.provider == CPU:
            # onnxruntime's CPU kernels are float32: a float16 graph runs with casts around most ops.
            log.warning(
                "'%s' is a float16 export running on the CPU (slower than float32); export without --fp16 for CPU use",
                self.path.name,
            )

    @property
    def provider(self) -> str:
        """The execution provider that runs this encoder (after any fallback): ``session.get_providers()[0]``."""
        return self.session.get_providers()[0]

    @property
    def device(self) -> str:
        """onnxruntime's device name for IO binding: ``cuda`` when a GPU provider runs the model, else ``cpu``."""
        return "cuda" if self.provider in GPU_PROVIDERS else "cpu"

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Preprocessed images [B, C, H, W] -> features [B, *output_shape] float32."""
        x = np.ascontiguousarray(batch.astype(self._input_type, copy=False))
        count = len(x)
        if self.provider == TENSORRT:  # one engine for the run: a smaller batch is padded (module docstring)
            self._engine_batch = max(self._engine_batch, count)
            if count < self._engine_batch:
                x = np.concatenate([x, np.repeat(x[-1:], self._engine_batch - count, axis=0)])
        if self.device == "cpu":
            out = self.session.run([self.info.output_name], {self.info.input_name: x})[0]
        else:  # one host-to-device copy in, one device-to-host copy out, no staging by onnxruntime
            out = self.run_on_device(ort.OrtValue.ortvalue_from_numpy(x, self.device, self.device_id)).numpy()
        return out[:count].astype(np.float32, copy=False)

    def run_on_device(self, x: ort.OrtValue) -> ort.OrtValue:
        """IO binding: an input ``OrtValue`` (on :attr:`device`, of the model's input dtype) ->
        the output ``OrtValue``, allocated by onnxruntime on the same device (nothing copied to the host)."""
        binding = self.session.io_binding()
        binding.bind_ortvalue_input(self.info.input_name, x)
        binding.bind_output(self.info.output_name, self.device, self.device_id if self.device != "cpu" else 0)
        self.session.run_with_iobinding(binding)
        return binding.get_outputs()[0]

    def preprocess(self, images: Sequence[str | Path | Image.Image | np.ndarray]) -> np.ndarray:
        return preprocess(images, self.info.input_shape, self.info.mean, self.info.std)

    def embed(self, images: Sequence[str | Path | Image.Image | np.ndarray], batch_size: int = 256) -> np.ndarray:
        """Images (files, PIL images, uint8 arrays) -> embeddings; an unreadable file is an error."""
        parts = [self(self.preprocess(images[i : i + batch_size])) for i in range(0, len(images), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, *self.info.output_shape), np.float32)

    def embed_files(
        self,
        files: Sequence[str | Path],
        batch_size: int = 256,
        workers: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> Embeddings:
        """Embed image files in batches, in memory; unreadable ones are skipped and listed.

        Decoding (Pillow, threads) of the next batch overlaps inference on this one;
        ``progress(done, total)`` is called after each batch. For collections that do not fit
        in memory, :func:`sslkit.embed_stream.embed_to_disk` writes rows as they come.
        """
        paths = [Path(f) for f in files]
        shape = self.info.input_shape
        kept: list[Path] = []
        skipped: list[Path] = []
        parts: list[np.ndarray] = []
        for rows, arrays in decoded_batches(lambda i: decode(paths[i], shape), len(paths), batch_size, workers):
            good = [a for a in arrays if a is not None]
            skipped += [paths[i] for i, a in zip(rows, arrays, strict=True) if a is None]
            if good:
                kept += [paths[i] for i, a in zip(rows, arrays, strict=True) if a is not None]
                parts.append(self(normalize(np.stack(good), self.info.mean, self.info.std)))
            if progress is not None:
                progress(rows.stop, len(paths))
        embeddings = np.concatenate(parts) if parts else np.zeros((0, *self.info.output_shape), np.float32)
        return Embeddings(embeddings, kept, skipped)


def decoded_batches(
    decode_one: Callable[[int], np.ndarray | None],
    count: int,
    batch_size: int,
    workers: int | None = None,
    start: int = 0,
) -> Iterator[tuple[range, list[np.ndarray | None]]]:
    """(indices, decoded images or None) for ``range(start, count)`` in batches; a thread pool
    decodes the next batch while the caller runs inference on this one."""
    chunks = [range(i, min(i + batch_size, count)) for i in range(start, count, batch_size)]
    with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
        pending = pool.map(decode_one, chunks[0]) if chunks else None
        for i, chunk in enumerate(chunks):
            arrays = list(pending)  # type: ignore[arg-type]
            pending = pool.map(decode_one, chunks[i + 1]) if i + 1 < len(chunks) else None
            yield chunk, arrays


def load(path: str | Path, provider: str | None = None, threads: int | None = None, device_id: int = 0) -> OnnxEncoder:
    """``OnnxEncoder(path, provider, threads, device_id)``."""
    return OnnxEncoder(path, provider, threads, device_id)
