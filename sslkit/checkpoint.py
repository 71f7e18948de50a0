"""Checkpoints that describe themselves and are written atomically.

A checkpoint is a plain dict of tensors and JSON-like values, so it loads with
``torch.load(path, weights_only=True)``: ``config`` (the full RunConfig), ``plugins`` (their
versions), ``epoch`` (epochs completed), ``history`` (metrics per epoch), ``data`` (image shape,
normalisation, classes), the ``backbone`` and ``task`` weights, and the ``optimizer`` and
gradient ``scaler`` states (the learning rate is a function of the step: ``engine.schedule``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError
from .files import atomic_write

FORMAT = "sslkit.checkpoint/1"
CHECKPOINT = "checkpoint.pt"


REQUIRED = ("config", "epoch", "backbone", "data")  # what the readers of a checkpoint rely on


def _torch_save(obj: Any, tmp: Path, final: Path) -> None:
    """``torch.save`` through a Python file, so that a full disk is an OSError naming ``final``
    (torch's own writer says only "basic_ios::clear" or "unexpected pos")."""
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(final)) from None
    except RuntimeError as exc:
        cause = exc.__context__
        if isinstance(cause, OSError):  # the file's own error, wrapped by torch's writer
            raise OSError(cause.errno, cause.strerror, str(final)) from None
        raise


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    atomic_write(path, lambda tmp: _torch_save({"format": FORMAT, **payload}, tmp, Path(path)))


def resolve_checkpoint(path: str | Path) -> Path:
    """A run folder or a checkpoint file -> the checkpoint file."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at '{path}': give a run folder of 'sslkit train' or its {CHECKPOINT}")
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint (run folder or file) safely, with ``weights_only=True``."""
    path = resolve_checkpoint(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"cannot read checkpoint '{path}' ({type(exc).__name__}); the file is corrupt or not an sslkit checkpoint"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"'{path}' is not an sslkit checkpoint (format {FORMAT})")
    missing = [key for key in REQUIRED if key not in state]
    if missing:
        raise CheckpointError(
            f"checkpoint '{path}' has no '{missing[0]}' entry: it is incomplete or was not written by "
            "'sslkit train'; train again or use a checkpoint from a finished run"
        )
    if not isinstance(state["config"], dict):
        raise CheckpointError(f"checkpoint '{path}': 'config' is not a table of settings; train again")
    return state
