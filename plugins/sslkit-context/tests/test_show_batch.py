"""``sslkit show-batch``: a labelled PNG of what a task feeds the network, for context and rotation."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from sslkit import PretextTask, create_backbone, create_task
from sslkit.cli import main
from sslkit.viz.batch import render_preview, to_uint8


def _run(*args):
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    return exc.value.code


@pytest.mark.parametrize("task,samples_per_image", [("context", 8), ("rotation", 4)])
def test_show_batch_writes_a_png(tmp_path, capsys, task, samples_per_image):
    out = tmp_path / f"{task}.png"
    assert _run("show-batch", task, "--data", "sample", "-n", "3", "-o", str(out), "--set", "backbone.width=0.1") == 0
    assert f"{3 * samples_per_image} samples of '{task}' from 3 images" in capsys.readouterr().out
    image = Image.open(out)
    assert image.mode == "RGB" and image.width > image.height > 3 * 64  # one row per image, tiles >= 64 px


def test_show_batch_bad_task_is_one_line_error(tmp_path, capsys):
    assert _run("show-batch", "contxt", "-o", str(tmp_path / "x.png")) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown pretext task 'contxt'") and "context" in err and "\n" not in err


def test_default_preview_and_rendering(plugins):
    backbone = create_backbone("nin", plugins, blocks=3, width=0.1)
    rotation = create_task("rotation", backbone, plugins)
    inputs, targets = rotation.prepare(torch.randn(2, 3, 32, 32), torch.Generator())
    items = rotation.preview(inputs, targets)  # the default of PretextTask
    assert [cap for _, cap in items] == [f"label {k}" for k in (0, 0, 1, 1, 2, 2, 3, 3)]
    assert torch.equal(items[3][0][0], inputs[3])
    sheet = render_preview(items, columns=4)
    assert sheet.size[0] > 4 * 64 and sheet.size[1] > 2 * 64
    with pytest.raises(NotImplementedError, match="override"):
        PretextTask.preview(rotation, (inputs, inputs), targets)
    # Display stretches each image to its own range.
    shown = to_uint8(torch.tensor([[[-3.0, 1.0]]]))
    assert shown.shape == (1, 2, 3) and shown[0, 0].tolist() == [0, 0, 0] and shown[0, 1].tolist() == [255, 255, 255]
