# %% [markdown]
# # sslkit in a notebook
#
# Each `# %%` cell runs on its own in Jupyter or VS Code. Training, probing and embedding show
# the same progress as the command line: a live bar in a notebook or a terminal, plain lines in a
# log (the tests run this file and check them).

# %%
import sys
from pathlib import Path

import torch

import sslkit

out = Path(sys.argv[1] if len(sys.argv) > 1 else "notebook-runs")

# %% Pretrain: a small RotNet on the embedded sample data (a bar per epoch, a line per epoch).
run = sslkit.train(
    "rotation",
    out / "rotnet",
    data="sample",
    epochs=2,
    device="cpu",
    **{"backbone.width": 0.1, "backbone.blocks": 3, "data.subset": 512, "data.batch_size": 64},
)
print(repr(run))  # a short summary, not the whole module

# %% Probe: the frozen trunk's features (a bar per split), then the probe (a line per epoch).
report = run.probe(probe="mlp", layers=["block2"], labels_per_class=30, device="cpu", options={"epochs": 3})
print(f"block2, non-linear probe: {report['layers']['block2']['test_acc']:.1%} test accuracy")

# %% Embed images: a bar over the batches; every row named.
images = torch.randint(0, 256, (300, 3, 32, 32), dtype=torch.uint8)
features, names = run.embed(images, layer="block2", batch_size=64, with_names=True)
print(f"embedded {features.shape[0]} images -> {tuple(features.shape[1:])}; first row: {names[0]}")
