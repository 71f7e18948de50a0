"""Context prediction (relative patch location) for sslkit. Doersch, Gupta, Efros, ICCV 2015."""

from .patches import OFFSETS, Geometry, auto_geometry, sample_patches
from .shortcuts import colour_drop, grayscale, patch_normalize, project_out_green_magenta, random_resample
from .task import ContextConfig, ContextPrediction

__all__ = [
    "OFFSETS",
    "Geometry",
    "auto_geometry",
    "sample_patches",
    "colour_drop",
    "grayscale",
    "patch_normalize",
    "project_out_green_magenta",
    "random_resample",
    "ContextConfig",
    "ContextPrediction",
]
__version__ = "0.1.0"
