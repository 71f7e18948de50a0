"""sslkit.testing's conformance checks run without TF32 and restore the caller's settings."""

from __future__ import annotations

import pytest
import torch

from sslkit import testing
from sslkit.testing import backbones, common, full_fp32

NEW_API = hasattr(torch.backends.cuda.matmul, "fp32_precision")


def _tf32_off() -> bool:
    """Whether every TF32 switch full_fp32 controls is off, read through the API it uses."""
    return all(getattr(owner, name) in ("ieee", False) for owner, name in common._fp32_precision_flags())


@pytest.mark.parametrize("before", [True, False])
def test_full_fp32_turns_tf32_off_and_restores_legacy_flags(before):
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = before
    try:
        with pytest.raises(RuntimeError, match="inside"), full_fp32():
            assert _tf32_off()
            raise RuntimeError("inside")  # restored on errors too (a failed check raises)
        assert torch.backends.cudnn.allow_tf32 is before and torch.backends.cuda.matmul.allow_tf32 is before
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.mark.skipif(not NEW_API, reason="this torch has no fp32_precision API")
def test_full_fp32_works_after_the_new_precision_api_was_used():
    """Once anyone sets ``fp32_precision``, torch raises on any use of the legacy allow_tf32 flags:
    full_fp32 used to read them and raised before the check even started."""
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    saved = matmul.fp32_precision, conv.fp32_precision
    matmul.fp32_precision, conv.fp32_precision = "tf32", "tf32"
    try:
        with full_fp32():
            assert matmul.fp32_precision == "ieee" and conv.fp32_precision == "ieee"
        assert matmul.fp32_precision == "tf32" and conv.fp32_precision == "tf32"  # what was there
    finally:
        matmul.fp32_precision, conv.fp32_precision = saved


def test_checks_run_inside_full_fp32(plugins, monkeypatch):
    seen = []
    real = common._same

    def spy(*args, **kwargs):
        seen.append(_tf32_off())
        return real(*args, **kwargs)

    monkeypatch.setattr(backbones, "_same", spy)
    torch.backends.cudnn.allow_tf32 = True
    testing.check_backbone("nin", plugins=plugins, options={"blocks": 3, "width": 0.1}, device="cpu", onnx=False)
    assert seen and all(seen) and torch.backends.cudnn.allow_tf32 is True
