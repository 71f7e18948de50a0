"""BYOL as an sslkit plugin: the task (:mod:`.task`), its momentum schedule and loss, and a reproduction recipe."""

from .task import momentum, regression_loss

__all__ = ["momentum", "regression_loss"]
