"""sslkit from Python, notebook style: train a tiny RotNet, load it, embed images, kNN, export.

    python examples/quickstart.py [OUT_DIR]

Each ``# %%`` cell runs on its own in Jupyter or VS Code. About a minute on 2 CPU cores (a
quarter-width NIN, one epoch on 1,024 images of the embedded ``sample`` data); CI runs it.
"""

# %% What is installed
import sys
import tempfile
from pathlib import Path

import torch
from PIL import Image

import sslkit

out = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="sslkit-quickstart-"))
print("tasks:", sslkit.list_tasks(), "backbones:", sslkit.list_backbones(), "probes:", sslkit.list_probes())

# %% A backbone on its own: named stages, forward returns {stage: feature map}
net = sslkit.create_backbone("nin", blocks=3, width=0.25)
maps = net(torch.randn(2, 3, 32, 32), ["block1", "block3"])
print({name: tuple(f.shape) for name, f in maps.items()})

# %% Pretrain: keyword overrides are config keys (dotted names or nested dicts)
run = sslkit.train(
    "rotation",
    out / "rotnet",
    backbone="nin",
    data="sample",
    epochs=1,
    **{"backbone.width": 0.25, "backbone.blocks": 3, "data.subset": 1024, "data.batch_size": 64},
    loggers=["csv"],  # also "tensorboard", "wandb" with pip install "sslkit[loggers]"
)
print(f"held-out rotation accuracy after one epoch: {run.history[-1]['heldout_acc']:.1%}")

# %% Load it back (in a new session this is all you need)
run = sslkit.load(out / "rotnet")
print(run.config["backbone"], "| stages:", run.backbone.stage_names, "| eval mode:", not run.backbone.training)

# %% Embed: image files, folders, PIL images or tensors, normalised as in training
picture = Image.new("RGB", (48, 40), (200, 30, 30))
picture.save(out / "red.png")
batch = torch.rand(4, 3, 32, 32)  # float images in 0..1 (torchvision's ToTensor)
print("avg-pooled:", tuple(run.embed(batch).shape), "| one file:", tuple(run.embed(out / "red.png").shape))
print("block2 maps:", tuple(run.embed([picture, out / "red.png"], layer="block2", pool="none").shape))

# %% How good are the features? kNN on the labelled sample data (100 labels per class)
report = run.probe("sample", probe="knn", layers=["block2"], labels_per_class=100, device="cpu")
knn = report["layers"]["block2"]["test_acc"]
print(f"kNN test accuracy on block2: {knn:.1%} (chance: 10%)")

# %% Ship it: a verified ONNX encoder and the weights as safetensors
onnx = run.export(out / "encoder.onnx", layer="block2")
weights = run.export(out / "backbone.safetensors", format="safetensors")
print("wrote", onnx.path.name, onnx.output_shape, "and", weights.path.name)
assert knn > 0.15, f"kNN accuracy {knn:.1%} is not above chance"
