"""The loop's data path (iterate_batches -> Crop -> normalize) copies nothing from the host per step.

A host-to-device copy from pageable memory (``images[idx.to(cuda)]``, ``torch.tensor([h, w],
device=cuda)``) waits for the device: a stream sync every step. On a GPU the ``cuda`` test below
runs the path under ``torch.cuda.set_sync_debug_mode("error")``. Without one, the audit runs the
same path with the data on the ``meta`` device standing in for the GPU (same code paths, no
pixels) and records every tensor that crosses from the host, and every read back to it
(``.item()``, ``nonzero``...), step by step.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from sslkit.data.augment import Crop, image_sizes, normalize
from sslkit.data.datasets import ImageData
from sslkit.data.training import epoch_indices_on, iterate_batches

MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
READS_BACK = {
    "aten._local_scalar_dense.default",
    "aten.nonzero.default",
    "aten.is_nonzero.default",
    "aten.equal.default",
}
STEPS, BATCH = 6, 16


class TransferAudit(TorchDispatchMode):
    """Records host -> device copies (a host tensor into an op on another device) and reads back."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        ins = [t for t in tree_leaves((args, kwargs or {})) if isinstance(t, Tensor)]
        outs = [t for t in tree_leaves(out) if isinstance(t, Tensor)]
        on_device = [t for t in ins + outs if t.device.type != "cpu"]
        copies = str(func).startswith(("aten._to_copy", "aten.copy_"))
        host = [t for t in ins if t.device.type == "cpu" and (t.dim() > 0 or copies)]
        if host and on_device:
            self.found.append(f"host->device {func} {[tuple(t.shape) for t in host]}")
        if str(func) in READS_BACK and on_device:
            self.found.append(f"read back {func}")
        if copies and any(t.device.type != "cpu" for t in ins) and any(t.device.type == "cpu" for t in outs):
            self.found.append(f"device->host {func}")
        return out


@pytest.fixture
def audit(monkeypatch) -> Iterator[TransferAudit]:
    """The audit, plus host data turned into device tensors (``torch.tensor(..., device=)`` copies
    inside the constructor, where dispatch modes do not see it)."""
    recorder = TransferAudit()
    for name in ("tensor", "as_tensor"):
        make = getattr(torch, name)

        def recorded(*args, _make=make, _name=name, **kwargs):
            device = kwargs.get("device")
            if device is not None and torch.device(device).type != "cpu":
                recorder.found.append(f"host->device torch.{_name}(..., device={device})")
            return _make(*args, **kwargs)

        monkeypatch.setattr(torch, name, recorded)
    return recorder


def _epoch(n: int = 200) -> list[Tensor]:
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    return [order[s * BATCH : (s + 1) * BATCH] for s in range(STEPS)]  # CPU slices, as the trainer cuts them


def _step(images: Tensor, crop: Crop, step: int) -> Tensor:
    x = crop(images, None, torch.Generator().manual_seed(step), BATCH, 0)
    return normalize(x, MEAN, STD)


@pytest.mark.parametrize("mode", ["pad_crop", "random_resized", "center"])
def test_no_host_transfer_per_step(audit, mode):
    """Data resident on the device (the default CIFAR path on a GPU): after the first step (which
    moves the epoch's index order over once and builds the normalisation constants once), a step
    moves nothing. The code before this test failed here: ``idx.to(device)`` and ``torch.tensor([h, w])``."""
    data = ImageData(torch.empty(200, 3, 32, 32, dtype=torch.uint8, device="meta"), None, [], "on the device")
    crop = Crop(mode, 24 if mode != "pad_crop" else 32)
    with audit:
        batches = iterate_batches(data, _epoch(), torch.device("meta"))
        first = next(batches)
        _step(first.images, crop, 0)
        assert len(audit.found) <= 3, audit.found  # the epoch's indices, the mean, the std: once each
        audit.found.clear()
        for step, batch in enumerate(batches, start=1):
            assert batch.images.device.type == "meta" and batch.images.shape == (BATCH, 3, 32, 32)
            out = _step(batch.images, crop, step)
            assert out.shape == (BATCH, 3, crop.size, crop.size) and out.dtype == torch.float32
    assert step == STEPS - 1
    assert audit.found == [], audit.found


def test_one_index_copy_per_epoch(audit):
    data = ImageData(torch.empty(200, 3, 8, 8, dtype=torch.uint8, device="meta"), None, [], "on the device")
    with audit:
        got = list(iterate_batches(data, _epoch(), torch.device("meta")))
    assert len(got) == STEPS
    assert len(audit.found) == 1 and "_to_copy" in audit.found[0], audit.found


def test_epoch_indices_keep_each_steps_images():
    batches = _epoch() + [torch.tensor([3, 1, 4])]  # a short last batch too
    moved = epoch_indices_on(batches, torch.device("meta"))
    assert [tuple(m.shape) for m in moved] == [tuple(b.shape) for b in batches]
    assert all(m.device.type == "meta" for m in moved)
    assert epoch_indices_on(batches, torch.device("cpu")) == batches  # already there: nothing copied


def test_sizes_without_a_host_tensor_match_the_old_values():
    images = torch.zeros(5, 3, 17, 29, dtype=torch.uint8)
    old = torch.tensor([17, 29]).expand(5, 2)  # what _sizes built before, with a copy per step on a GPU
    new = image_sizes(images, None)
    assert new.dtype == old.dtype and torch.equal(new, old)


def test_cpu_batches_unchanged():
    """On the CPU the path is the one it was: the same images per step, bit for bit."""
    images = torch.randint(0, 256, (200, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    data = ImageData(images, None, [], "cpu")
    for idx, batch in zip(_epoch(), iterate_batches(data, _epoch(), torch.device("cpu")), strict=True):
        assert torch.equal(batch.images, images[idx])


@pytest.mark.cuda
@pytest.mark.parametrize("mode", ["pad_crop", "random_resized", "center"])
def test_no_sync_on_cuda(mode):
    """The real thing: a few steps on a GPU with every synchronising call an error, and the same
    batches as the CPU path."""
    device = torch.device("cuda")
    host = torch.randint(0, 256, (200, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    data = ImageData(host.to(device), None, [], "on the GPU")
    crop = Crop(mode, 24 if mode != "pad_crop" else 32)
    normalize(torch.zeros(1, 3, 1, 1, device=device), MEAN, STD)  # constants built once, before
    outs = []
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for step, batch in enumerate(iterate_batches(data, _epoch(), device)):
            x = crop(batch.images, None, torch.Generator(device=device).manual_seed(step), BATCH, 0)
            outs.append((batch.images, normalize(x, MEAN, STD)))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    for idx, (images, out) in zip(_epoch(), outs, strict=True):
        assert torch.equal(images.cpu(), host[idx]) and out.shape == (BATCH, 3, crop.size, crop.size)
