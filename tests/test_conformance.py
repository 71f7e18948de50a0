"""Everything registered passes sslkit.testing's conformance checks.

Parametrised over the registries at collection time, so a newly installed plugin (a task, a
backbone or a probe) is checked automatically. Tasks run on a small NIN; backbones on 16-px
images (enough for every stride in use) to stay fast.
"""

from __future__ import annotations

import pytest

from sslkit.plugins import load_plugins
from sslkit.testing import SMALL_NIN, check_backbone, check_probe, check_task

PLUGINS = load_plugins(selection="")
# Options that keep each check fast; anything not listed runs with its defaults.
BACKBONE_OPTIONS = {"nin": dict(SMALL_NIN)}
TASK_OPTIONS = {"jigsaw": {"permutations": 16, "tile_dim": 32, "hidden": 64}}


@pytest.mark.parametrize("name", PLUGINS.tasks.names())
def test_task(name):
    report = check_task(name, plugins=PLUGINS, options=TASK_OPTIONS.get(name), device="cpu")
    assert "loss finite and decreasing" in report.checks


@pytest.mark.parametrize("name", PLUGINS.backbones.names())
def test_backbone(name):
    report = check_backbone(name, plugins=PLUGINS, options=BACKBONE_OPTIONS.get(name), image_size=16, device="cpu")
    assert "onnx export matches" in report.checks


@pytest.mark.parametrize("name", PLUGINS.probes.names())
def test_probe(name):
    check_probe(name, plugins=PLUGINS, device="cpu")


def test_registries_are_not_empty():
    assert len(PLUGINS.tasks) and len(PLUGINS.backbones) and len(PLUGINS.probes)
