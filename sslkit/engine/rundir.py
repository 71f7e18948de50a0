"""The run folder: one writer at a time, started once, resumed only onto the same run.

- :func:`RunLock`: the output lock (``.lock``, holding the PID) for the whole run, so two
  ``sslkit train`` into one ``--out`` can never mix their files.
- :func:`open_run`: a fresh start, or the checkpoint to resume, by ``resume`` = False / True /
  ``"auto"`` (start or continue).
- :func:`resumed_config`: the checkpoint's config with the few keys a resume may change, and
  the list of what changed (recorded in the checkpoint; ``config.json`` is rewritten to match).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from ..checkpoint import CHECKPOINT, load_checkpoint
from ..config import RunConfig
from ..errors import CheckpointError
from ..files import OutputLock

Resume = bool | Literal["auto"]
# Keys a resumed run may change; anything else must match the checkpoint's config.
RESUMABLE_KEYS = ("epochs", "device", "compile", "sync_batchnorm", "checkpoint", "dist_timeout_minutes", "monitor")
RESUMABLE_DATA_KEYS = ("workers", "decode", "batch_reads")  # how the data is read, not what it is


def RunLock(out_dir: Path) -> OutputLock:  # noqa: N802 -- reads as the context manager it returns
    """``with RunLock(out_dir):`` one ``sslkit train`` at a time in a run folder (``out_dir/.lock``)."""
    return OutputLock(out_dir, "run")


def open_run(out_dir: Path, resume: Resume, map_location: Any) -> dict[str, Any] | None:
    """The checkpoint to continue from, or None for a fresh start (see module doc)."""
    has_checkpoint = (out_dir / CHECKPOINT).exists()
    if has_checkpoint and resume is False:
        raise CheckpointError(f"'{out_dir}' already holds a run; add --resume to continue it, or choose another --out")
    if not has_checkpoint:
        if resume is True:
            raise CheckpointError(
                f"--resume: no checkpoint in '{out_dir}' to continue; drop --resume to start a run there, "
                "or use --resume auto to start or continue"
            )
        return None
    return load_checkpoint(out_dir, map_location=map_location)


def resumed_config(stored: dict[str, Any], requested: RunConfig) -> tuple[RunConfig, dict[str, list[Any]]]:
    """The checkpoint's config with the resumable keys taken from the request, and the changes
    ``{"epochs": [3, 5], ...}``."""
    old = RunConfig.model_validate(stored)
    new = requested.model_dump(mode="json")
    was = old.model_dump(mode="json")
    for key in ("mean", "std"):  # filled in from the data at the first start
        if new["data"][key] is None:
            new["data"][key] = was["data"][key]
    if new["backbone"].get("image_size", 0) is None:  # filled in with the training size at the first start
        new["backbone"]["image_size"] = was["backbone"].get("image_size")
    for key in RESUMABLE_DATA_KEYS:
        new["data"][key] = was["data"][key]
    for key in sorted(set(new) | set(was)):
        if key not in RESUMABLE_KEYS and new.get(key) != was.get(key):
            raise CheckpointError(
                f"--resume: '{key}' differs from the run's config ({was.get(key)} in the checkpoint, "
                f"{new.get(key)} now); resume with the original settings or start a new --out folder"
            )
    changes = {k: [was[k], new[k]] for k in RESUMABLE_KEYS if was.get(k) != new.get(k)}
    data = old.data.model_copy(update={k: getattr(requested.data, k) for k in RESUMABLE_DATA_KEYS})
    config = old.model_copy(update={"data": data, **{k: getattr(requested, k) for k in RESUMABLE_KEYS}})
    return config, changes


def check_resumable(state: dict[str, Any], config: RunConfig, data_fingerprint: str, train_images: int) -> None:
    """One-line errors for a resume that cannot continue this run."""
    done = int(state["epoch"])
    if config.epochs < done or (config.epochs == done and int(state.get("step", 0))):
        raise CheckpointError(
            f"--resume: the run has already trained {done} epochs, more than --epochs {config.epochs}; "
            f"ask for more epochs (e.g. --epochs {done + 1}) to continue it"
        )
    data = state.get("data", {})
    stored = data.get("fingerprint")
    if stored is not None and stored != data_fingerprint:
        then = data.get("images")
        what = (
            f"{then:,} images then, {train_images:,} now"
            if then is not None and then != train_images
            else "the same number of images with different content"
        )
        raise CheckpointError(
            f"--resume: the data changed since the run started ({what}); resume on the original data "
            "or start a new --out folder"
        )
