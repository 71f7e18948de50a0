"""Jigsaw puzzles: recover which of N fixed permutations shuffled an image's 3x3 tiles.

Noroozi and Favaro, "Unsupervised Learning of Visual Representations by Solving Jigsaw
Puzzles", ECCV 2016.

- transform (:meth:`JigsawPuzzle.prepare`): per image, cut 9 tiles (random position inside
  each cell, :mod:`.tiles`), draw a label ``i`` and reorder the tiles by permutation ``i`` of a
  set chosen for maximal Hamming distance (:mod:`.permutations`); optional grayscale and
  per-tile normalisation. B images -> 9*B tiles, B labels.
- head: the backbone (shared by all tiles, one call for the whole batch of 9*B tiles) ->
  global average pool -> Linear + ReLU per tile (the paper's fc6) -> the 9 tile embeddings
  concatenated in grid order -> Linear + ReLU (fc7) -> Linear over the N permutations (fc8).
- loss: cross-entropy over the permutation index.

The paper's network is an AlexNet trunk with fc6 1024 per tile and fc7 4096; the defaults
here (128, 512) suit the small NIN/ResNet trunks sslkit trains on 32x32 images.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from sslkit import Backbone, Config, PretextTask

from .permutations import TILES, hamming_permutations
from .tiles import cut_tiles, grayscale_tiles, normalize_tiles, resize_to, tile_geometry


class JigsawConfig(Config):
    permutations: int = Field(
        100, ge=2, le=10000, description="size of the permutation set = number of classes (paper: 100 to 2000)"
    )
    permutation_seed: int = Field(
        0, description="seed of the greedy permutation selection (the set is stored in checkpoints)"
    )
    criterion: Literal["average", "minimum"] = Field(
        "average", description="maximise the average (paper, Algorithm 1) or the minimum Hamming distance"
    )
    min_size: int = Field(64, ge=0, description="upsample smaller images to this side before tiling (0: never)")
    tile_ratio: float = Field(0.75, gt=0, le=1, description="tile side / cell side (paper: 64/85)")
    grayscale: float = Field(0.3, ge=0, le=1, description="probability that a tile is made grayscale")
    normalize_tiles: bool = Field(True, description="zero mean, unit std per tile and channel")
    stage: str | None = Field(None, description="backbone stage the tiles are embedded from (default: the last)")
    tile_dim: int = Field(128, ge=1, description="per-tile embedding size (paper fc6: 1024)")
    hidden: int = Field(512, ge=1, description="hidden layer over the concatenated tiles (paper fc7: 4096)")


class JigsawPuzzle(PretextTask):
    """The jigsaw pretext task (see the module docstring)."""

    Config = JigsawConfig
    presets = {
        # AdamW at lr 1e-3: SGD sits on the plateau at chance that jigsaw training is known for.
        # Measured on 2 CPU cores, NIN width 0.5, bf16, batch 128 (chance: 1% for 100
        # permutations). CIFAR-10 folder, 8,000 images, 4 epochs (141 s): AdamW reached 21.5%
        # held-out accuracy, SGD lr 0.01 2.0% (14.6% on its training puzzles). The embedded
        # sample, 8 epochs (3 min): 58.3% held-out.
        "default": {"optim": {"name": "adamw", "lr": 1e-3, "weight_decay": 1e-4}},
    }
    default_preset = "default"

    def __init__(self, config: JigsawConfig, backbone: Backbone) -> None:
        super().__init__(config, backbone)
        self.config: JigsawConfig = config
        stage = backbone.stage(config.stage) if config.stage else backbone.last_stage
        self.stage = stage.name
        # A buffer, so the exact label -> permutation table travels with the checkpoint.
        self.register_buffer(
            "permutation_set", hamming_permutations(config.permutations, config.permutation_seed, config.criterion)
        )
        self.embed = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(stage.channels, config.tile_dim), nn.ReLU(inplace=True)
        )
        self.classifier = nn.Sequential(
            nn.Linear(TILES * config.tile_dim, config.hidden),
            nn.ReLU(inplace=True),
            nn.Linear(config.hidden, config.permutations),
        )

    def prepare(self, images: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """images [B, C, H, W] -> tiles [9*B, C, T, T] (image-major, shuffled), labels [B]."""
        b, _, h, w = images.shape
        size, cell, tile = tile_geometry(min(h, w), self.config.min_size, self.config.tile_ratio)
        x = resize_to(images, size)  # a no-op for square images already big enough
        tiles = cut_tiles(x, cell, tile, generator)  # [B, 9, C, T, T]
        labels = torch.randint(0, self.config.permutations, (b,), generator=generator, device=images.device)
        order = self.permutation_set[labels]  # [B, 9]: position j shows original tile order[j]
        tiles = tiles[torch.arange(b, device=images.device)[:, None], order]
        tiles = grayscale_tiles(tiles, self.config.grayscale, generator)
        if self.config.normalize_tiles:
            tiles = normalize_tiles(tiles)
        return tiles.flatten(0, 1), labels

    def forward(self, backbone: Backbone, inputs: Tensor) -> Tensor:
        """tiles [9*B, C, T, T] -> logits [B, permutations]; one backbone call for all tiles."""
        features = self.embed(backbone(inputs, [self.stage])[self.stage])  # [9*B, tile_dim]
        return self.classifier(features.reshape(-1, TILES * features.shape[1]))
