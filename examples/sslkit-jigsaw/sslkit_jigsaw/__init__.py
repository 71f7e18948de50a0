"""Jigsaw puzzles as a pretext task for sslkit. Noroozi and Favaro, ECCV 2016."""

from .permutations import hamming_permutations
from .task import JigsawConfig, JigsawPuzzle
from .tiles import cut_tiles, grayscale_tiles, normalize_tiles, tile_geometry

__all__ = [
    "JigsawConfig",
    "JigsawPuzzle",
    "cut_tiles",
    "grayscale_tiles",
    "hamming_permutations",
    "normalize_tiles",
    "tile_geometry",
]
__version__ = "0.1.0"
