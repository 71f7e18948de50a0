"""How to probe: which probe, where, and on what data (everything but the trunk)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import ConfigError


class ProbeSettings(BaseModel):
    """How to probe: which probe, where, and on what data (everything but the trunk)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    probe: str = "mlp"
    options: dict[str, Any] = Field(default_factory=dict, description="the probe's Config overrides")
    layers: tuple[str, ...] = ()
    finetune: bool = False
    augment: bool = Field(False, description="crop + flip per batch (the paper's protocol); off: cached features")
    flip: bool = Field(
        False,
        description="cached features: also cache the mirrored training images' and train each sample on one of "
        "the two at random (the flip of the paper's crop + flip; one more trunk pass over the training split)",
    )
    labels_per_class: int | None = Field(None, ge=1)
    epoch_size: int | None = Field(None, ge=1, description="samples per epoch (default: the full training split)")
    val_fraction: float = Field(0.1, ge=0, lt=0.5)
    test_fraction: float = Field(0.2, gt=0, lt=0.5, description="carved when the data has no test split")
    select: Literal["last", "val"] = "last"
    seed: int = 0
    device: str = "auto"
    eval_batch_size: int = Field(256, ge=1)
    cache_gb: float = Field(4.0, gt=0, description="above this, features are extracted one layer at a time")
    max_steps: int | None = Field(None, ge=1, description="cap on steps per epoch (smoke tests)")
    tiles: int = Field(
        1, ge=1, description="read each image as tiles x tiles patches and stitch the maps (patch-trained trunks)"
    )
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="cached features: autocast of the trunk pass; auto: the precision the run trained in"
    )


def probe_settings(**values: Any) -> ProbeSettings:
    """:class:`ProbeSettings` with a one-line :class:`~sslkit.errors.ConfigError` for a bad value
    (the CLI and the Python API alike), before any data or weights are loaded."""
    try:
        return ProbeSettings(**values)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc)) from None


def _one_line(exc: ValidationError) -> str:
    """e.g. "--val-fraction 0.7: out of range; use a value >= 0 and < 0.5 (setting val_fraction)"."""
    err = exc.errors()[0]
    name = str(err["loc"][0]) if err["loc"] else ""
    option = f"--{name.replace('_', '-')} {err.get('input')!r}"
    if err["type"] == "extra_forbidden":
        from ..registry import suggest

        known = list(ProbeSettings.model_fields)
        return f"unknown probe setting '{name}'{suggest(name, known)}; settings: {', '.join(known)}"
    bounds = [
        f"{op} {getattr(m, attr)}"
        for m in getattr(ProbeSettings.model_fields.get(name), "metadata", [])
        for attr, op in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
        if getattr(m, attr, None) is not None
    ]
    if bounds:
        return f"{option}: out of range; use a value {' and '.join(bounds)} (setting {name})"
    return f"{option}: {err['msg'].removeprefix('Input ')} (setting {name})"
