"""sslkit.testing's conformance checks run without TF32 and restore the caller's settings."""

from __future__ import annotations

import pytest
import torch

from sslkit.testing import full_fp32


@pytest.mark.parametrize("before", [True, False])
def test_full_fp32_turns_tf32_off_and_restores(before):
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = before
    try:
        with pytest.raises(RuntimeError, match="inside"), full_fp32():
            assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
            raise RuntimeError("inside")  # restored on errors too (a failed check raises)
        assert torch.backends.cudnn.allow_tf32 is before and torch.backends.cuda.matmul.allow_tf32 is before
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def test_checks_run_inside_full_fp32(plugins, monkeypatch):
    from sslkit import testing

    seen = []
    real = testing._same

    def spy(*args, **kwargs):
        seen.append(torch.backends.cudnn.allow_tf32)
        return real(*args, **kwargs)

    monkeypatch.setattr(testing, "_same", spy)
    torch.backends.cudnn.allow_tf32 = True
    testing.check_backbone("nin", plugins=plugins, options={"blocks": 3, "width": 0.1}, device="cpu", onnx=False)
    assert seen and not any(seen) and torch.backends.cudnn.allow_tf32 is True
