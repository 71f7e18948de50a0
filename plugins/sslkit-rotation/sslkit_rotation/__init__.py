"""Rotation prediction (RotNet) for sslkit. Gidaris, Singh, Komodakis, ICLR 2018."""

from .task import RotationConfig, RotationPrediction, rotate

__all__ = ["RotationConfig", "RotationPrediction", "rotate"]
__version__ = "0.1.0"
