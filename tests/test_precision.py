"""precision=auto: bf16 where the device computes it natively, fp32 elsewhere; the run records
the precision it chose."""

from __future__ import annotations

import json

import torch

from sslkit.config import assemble
from sslkit.engine import precision
from sslkit.engine.trainer import train


def test_auto_picks_bf16_only_where_it_is_native(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert precision.resolve_precision("auto", cpu) == "fp32"
    assert precision.resolve_precision("auto", torch.device("mps")) == "fp32"
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert precision.resolve_precision("auto", cpu) == "bf16"
    for given in ("fp32", "bf16", "fp16"):
        assert precision.resolve_precision(given, cpu) == given


def test_the_cpu_flags_name_the_native_bf16_extensions():
    epyc = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\nbugs\t\t: spectre_v1\n"
    sapphire = "flags\t\t: avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
    assert not precision.cpuinfo_has_native_bf16(epyc)
    assert precision.cpuinfo_has_native_bf16(sapphire)
    assert precision.cpuinfo_has_native_bf16("flags: avx512_bf16\n")
    assert not precision.cpuinfo_has_native_bf16("model name: something without flags\n")


def test_a_run_records_the_precision_auto_chose(plugins, tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    sets = ["backbone.blocks=3", "backbone.width=0.1", "data.subset=64", "data.batch_size=32", "precision=auto"]
    cfg = assemble("rotation", plugins, sets=sets, flags={"epochs": 1, "device": "cpu"})
    train(cfg, tmp_path, plugins=plugins)
    assert json.loads((tmp_path / "config.json").read_text())["precision"] == "fp32"
