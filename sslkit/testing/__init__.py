"""Conformance checks for plugin authors: does a task, backbone or probe keep sslkit's contracts?

A plugin's whole test file can be::

    from sslkit.testing import check_task

    def test_conformance(sslkit_plugins):          # fixture from sslkit's pytest plugin
        check_task("mytask", plugins=sslkit_plugins)

Each ``check_*`` builds the thing from its registered name (or from the class itself), runs it on
a tiny synthetic batch and raises :class:`ConformanceError` (an ``AssertionError``, so pytest
shows it as a failure) naming the broken contract. What is checked:

- types: the class subclasses the right :mod:`sslkit` interface and its ``Config`` forbids
  unknown keys; presets (tasks) are valid run-config overrides;
- shapes: stages have the declared channels and stride (backbones), logits are ``[M, K]`` with
  targets ``[M]`` int64 in ``[0, K)`` (tasks), ``[B, classes]`` (probes);
- learning: the loss is finite and decreases over a few optimiser steps on a fixed tiny batch;
- determinism: the same seed gives the same weights, pretext draws and outputs;
- device and ``channels_last``: outputs stay on the input's device, channels_last gives the
  same numbers;
- checkpoint round trip: ``state_dict`` -> ``torch.save`` -> ``torch.load(weights_only=True)``
  -> a fresh instance gives identical outputs;
- ONNX (backbones, optional): ``torch.onnx.export`` to a temporary file, run with
  onnxruntime, outputs match.

The checks only use the public interfaces, so a plugin that passes them trains with
``sslkit train``, probes and exports like the built-ins.
"""

from __future__ import annotations

from .backbones import check_backbone
from .common import SMALL_NIN, ConformanceError, Report, full_fp32, synthetic_images
from .probes import check_probe
from .tasks import check_task

__all__ = [
    "ConformanceError",
    "Report",
    "SMALL_NIN",
    "check_backbone",
    "check_probe",
    "check_task",
    "full_fp32",
    "synthetic_images",
]
