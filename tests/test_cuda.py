"""The CUDA paths, on a real GPU: every test here is marked ``cuda`` and skipped without one.

Run them with ``pytest -m cuda -q tests/test_cuda.py`` (``benchmarks/gpu_check.py`` does, and
records the counts). Each test is small (a tiny NIN, a few steps): it checks that the path runs
and gives the right numbers on the device, not how fast.
"""

from __future__ import annotations

import socket
import warnings

import numpy as np
import pytest
import torch

from sslkit import create_backbone
from sslkit.config import assemble
from sslkit.engine.trainer import train

pytestmark = pytest.mark.cuda

TINY = ["backbone.blocks=3", "backbone.width=0.1", "data.subset=256", "data.batch_size=64", "data.holdout=0.25"]
MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
# fp16 ONNX vs fp32 ONNX, both on CUDA: max |difference| / max |fp32 feature|. float16 keeps 11
# bits (~5e-4 relative per op); through a few conv + BN + ReLU layers 1e-2 leaves a margin of ~5x.
FP16_TOLERANCE = 1e-2


def _config(plugins, *extra, epochs=1, device="cuda"):
    return assemble("rotation", plugins, sets=[*TINY, *extra], flags={"epochs": epochs, "device": device})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# Training


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_amp_training_step(plugins, tmp_path, precision):
    """bf16 autocast, and fp16 autocast with the gradient scaler, channels_last: finite, learns."""
    result = train(
        _config(plugins, f"precision={precision}", "channels_last=true", epochs=2), tmp_path, plugins=plugins
    )
    first, last = result.history[0], result.history[-1]
    assert np.isfinite(last["train_loss"]) and last["train_loss"] < first["train_loss"] * 1.5
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["config"]["precision"] == precision
    assert all(
        t.dtype == torch.float32 for t in state["backbone"].values() if t.is_floating_point()
    )  # master weights fp32


def test_compiled_training(plugins, tmp_path):
    result = train(_config(plugins, "compile=true", "precision=bf16"), tmp_path, plugins=plugins)
    assert np.isfinite(result.last["train_loss"]) and result.last["images_per_s"] > 0


def test_checkpoint_moves_between_cuda_and_cpu(plugins, tmp_path):
    """Saved on CUDA, resumed on the CPU, resumed on CUDA again: same run, every tensor loadable."""
    train(_config(plugins, epochs=1, device="cuda"), tmp_path, plugins=plugins)
    state = torch.load(tmp_path / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert state["epoch"] == 1 and all(
        torch.isfinite(t).all() for t in state["backbone"].values() if t.is_floating_point()
    )
    train(_config(plugins, epochs=2, device="cpu"), tmp_path, plugins=plugins, resume=True)
    result = train(_config(plugins, epochs=3, device="cuda"), tmp_path, plugins=plugins, resume=True)
    assert [r["epoch"] for r in result.history] == [1, 2, 3]


def test_pinned_memory_non_blocking_copy():
    from sslkit.probes.features import LiveFeatures

    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    pinned = x.pin_memory()
    assert pinned.is_pinned()
    y = pinned.to("cuda", non_blocking=True)
    torch.cuda.current_stream().synchronize()
    assert torch.equal(y.cpu(), x)
    torch.manual_seed(0)
    bb = create_backbone("nin", blocks=3, width=0.1).eval()
    live = LiveFeatures(bb.cuda(), x, "block2", MEAN, STD, torch.device("cuda"), augment=False)
    idx = torch.arange(8)
    got = live.batch(idx, None, train=False)  # host images gathered, pinned, copied asynchronously
    from sslkit.data.augment import normalize

    with torch.no_grad():
        want = bb.cpu()(normalize(x[:8], MEAN, STD), ["block2"])["block2"]
    torch.testing.assert_close(got.cpu(), want, rtol=1e-3, atol=1e-3)


@pytest.fixture(scope="module")
def nccl_group():
    """A one-process NCCL group on a free local port (what torchrun sets up, without torchrun)."""
    import torch.distributed as dist

    dist.init_process_group(
        "nccl", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1, device_id=torch.device("cuda", 0)
    )
    yield dist
    dist.destroy_process_group()


def test_nccl_all_reduce(nccl_group):
    t = torch.arange(4, device="cuda", dtype=torch.float32)
    nccl_group.all_reduce(t)
    assert nccl_group.get_backend() == "nccl" and t.tolist() == [0.0, 1.0, 2.0, 3.0]


def test_sync_batchnorm_matches_batchnorm(nccl_group):
    """SyncBatchNorm in a one-process group normalises exactly as BatchNorm2d (same batch statistics)."""
    from sslkit.engine.syncbn import convert_sync_batchnorm

    torch.manual_seed(0)
    plain = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8)).cuda()
    synced = convert_sync_batchnorm(__import__("copy").deepcopy(plain), torch.device("cuda"))
    assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in synced.modules())
    x = torch.randn(16, 3, 12, 12, device="cuda", requires_grad=True)
    a, b = plain(x), synced(x)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    a.square().mean().backward()
    b.square().mean().backward()
    torch.testing.assert_close(plain[0].weight.grad, synced[0].weight.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(plain[1].running_mean, synced[1].running_mean)


# ---------------------------------------------------------------------------------------------
# No host-device syncs in the pretext steps and the probe loop


def _no_sync(fn):
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any synchronising call raises
    try:
        return fn()
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize(
    "task,options",
    [
        ("rotation", {}),
        ("rotation", {"angles": [0, 45, 90, 135], "mode": "random"}),
        ("context", {}),
        ("context", {"chromatic": "drop", "resample": 1.0}),
    ],
)
def test_pretext_step_does_not_sync(plugins, task, options):
    from sslkit import create_task

    torch.manual_seed(0)
    bb = create_backbone("nin", blocks=3, width=0.1).cuda()
    model = create_task(task, bb, **options).cuda()
    images = torch.rand(8, 3, 32, 32, device="cuda")
    gen = torch.Generator(device="cuda").manual_seed(0)

    def step():
        inputs, targets = model.prepare(images, gen)
        logits = model(bb, inputs)
        loss = model.loss(logits, targets)
        loss.backward()
        return model.correct(logits, targets)

    correct = _no_sync(step)
    assert 0 <= int(correct) <= logits_count(task, options)


def logits_count(task: str, options: dict) -> int:
    return (
        8 * (4 if task == "rotation" and options.get("mode", "all") == "all" else 1) * (8 if task == "context" else 1)
    )


def test_probe_training_reads_back_once_per_epoch(plugins):
    from sslkit.config import validate_section
    from sslkit.probes.features import CachedFeatures
    from sslkit.probes.settings import ProbeSettings
    from sslkit.probes.training import train_probe

    cls = plugins.probes.get("linear")
    probe = cls(validate_section(cls.Config, {"epochs": 1, "batch_size": 8}, "probe."), (4, 2, 2), 3).cuda()
    feats = CachedFeatures(torch.randn(128, 4, 2, 2, device="cuda"))  # 16 steps
    labels = torch.randint(0, 3, (128,))
    val = (CachedFeatures(torch.randn(32, 4, 2, 2, device="cuda")), torch.randint(0, 3, (32,), device="cuda"))
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            history, _ = train_probe(probe, feats, labels, ProbeSettings(probe="linear"), torch.device("cuda"), val=val)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    assert len(syncs) < 16, f"{len(syncs)} syncs for 16 steps"
    assert 0 <= history[0]["val_acc"] <= 1


def test_probes_with_validation_run_on_cuda(plugins):
    """The bug of issue 12: CPU predictions vs GPU labels crashed every probe with a validation split."""
    from sslkit.data.opener import load_dataset
    from sslkit.probes.evaluation import run_probes
    from sslkit.probes.settings import ProbeSettings
    from sslkit.probes.splits import make_splits
    from sslkit.probes.trunk import Trunk

    data = load_dataset("sample", plugins, "train")
    splits = make_splits(data, None, val_fraction=0.1, test_fraction=0.2, labels_per_class=None, seed=0)
    torch.manual_seed(0)
    trunk = Trunk(create_backbone("nin", blocks=3, width=0.1), MEAN, STD, "random", None)
    for probe in ("linear", "mlp", "conv"):
        settings = ProbeSettings(probe=probe, device="cuda", options={"epochs": 1}, max_steps=3)
        report = run_probes(trunk, splits, plugins, settings)
        layer = next(iter(report["layers"].values()))
        assert 0 <= layer["val"]["acc"] <= 1 and 0 <= layer["test_acc"] <= 1


# ---------------------------------------------------------------------------------------------
# onnxruntime on CUDA (needs the onnxruntime-gpu build: a GPU machine may have the plain CPU wheel)


def _ort_has_cuda() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


ort_cuda = pytest.mark.skipif(not _ort_has_cuda(), reason="this onnxruntime build has no CUDA provider")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from sslkit.export import export_encoder

    torch.manual_seed(0)
    bb = create_backbone("nin", blocks=3, width=0.25).eval()
    root = tmp_path_factory.mktemp("onnx")
    export_encoder(bb, root / "fp32.onnx", layer="block2", input_shape=(3, 32, 32), mean=MEAN, std=STD)
    export_encoder(bb, root / "fp16.onnx", layer="block2", input_shape=(3, 32, 32), mean=MEAN, std=STD, fp16=True)
    return bb, root


@ort_cuda
def test_ort_runs_on_the_cuda_provider(exported):
    from sslkit.deploy import OnnxEncoder
    from sslkit.run import Encoder

    bb, root = exported
    enc = OnnxEncoder(root / "fp32.onnx", provider="cuda")
    assert enc.provider == "CUDAExecutionProvider" == enc.session.get_providers()[0] and enc.device == "cuda"
    auto = OnnxEncoder(root / "fp32.onnx")
    assert auto.provider in ("CUDAExecutionProvider", "TensorrtExecutionProvider") and auto.report.fallback is None
    x = np.random.default_rng(0).standard_normal((16, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        want = Encoder(bb, "block2").eval()(torch.from_numpy(x)).numpy()
    have = enc(x)  # through IO binding
    # onnxruntime's CUDA provider runs convolutions in TF32 by default (10-bit mantissa, ~5e-4
    # per operation): 5e-3 of the largest feature after a few layers, against the CPU's fp32.
    assert np.abs(have - want).max() / np.abs(want).max() < 5e-3


@ort_cuda
def test_io_binding_keeps_data_on_the_device(exported):
    import onnxruntime as ort

    from sslkit.deploy import OnnxEncoder

    _, root = exported
    enc = OnnxEncoder(root / "fp32.onnx", provider="cuda")
    x = np.random.default_rng(1).standard_normal((8, 3, 32, 32)).astype(np.float32)
    out = enc.run_on_device(ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0))
    assert out.device_name().lower() == "cuda"
    np.testing.assert_allclose(out.numpy(), enc.session.run(None, {enc.info.input_name: x})[0], rtol=1e-4, atol=1e-5)


@ort_cuda
def test_fp16_onnx_agrees_with_fp32_on_cuda(exported):
    from sslkit.deploy import OnnxEncoder

    _, root = exported
    full, half = OnnxEncoder(root / "fp32.onnx", provider="cuda"), OnnxEncoder(root / "fp16.onnx", provider="cuda")
    assert half.provider == "CUDAExecutionProvider" and half.info.dtype == "float16"
    x = np.random.default_rng(2).standard_normal((32, 3, 32, 32)).astype(np.float32)
    a, b = full(x), half(x)
    assert b.dtype == np.float32 and np.isfinite(b).all()
    assert np.abs(a - b).max() / np.abs(a).max() < FP16_TOLERANCE


# ---------------------------------------------------------------------------------------------
# Conformance checks under cuDNN's TF32 default


@pytest.mark.parametrize("name", ["nin", "resnet18", "alexnet"])
def test_conformance_channels_last_on_cuda_with_tf32_default(plugins, name):
    """The checks compare channels_last at 1e-4: they turn TF32 off while they run (and back after)."""
    from sslkit.testing import check_backbone, check_task

    torch.backends.cudnn.allow_tf32 = True  # PyTorch's default for convolutions
    check_backbone(name, plugins=plugins, device="cuda", onnx=False, image_size=96 if name == "alexnet" else 32)
    check_task("rotation", plugins=plugins, device="cuda")
    assert torch.backends.cudnn.allow_tf32 is True
