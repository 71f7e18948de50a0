"""What a task asks the engine for instead of one crop: groups of views of every image
(:class:`View`), drawn by :mod:`sslkit.data.views`."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class View(BaseModel):
    """One group of views (``count`` views of every image, drawn alike)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    count: int = Field(1, ge=1, le=64, description="views of each image in this group")
    size: int | None = Field(None, ge=4, le=4096, description="output side in pixels (default: the training size)")
    scale: tuple[float, float] = Field((0.08, 1.0), description="range of the box's area fraction")
    ratio: tuple[float, float] = Field((3 / 4, 4 / 3), description="range of the box's aspect ratio")
    flip: float = Field(0.5, ge=0, le=1, description="probability of a horizontal flip")
    jitter: float = Field(0.0, ge=0, le=1, description="probability of colour jitter")
    brightness: float = Field(0.4, ge=0, description="jitter: brightness factor in [1-b, 1+b]")
    contrast: float = Field(0.4, ge=0, description="jitter: contrast factor in [1-c, 1+c]")
    saturation: float = Field(0.4, ge=0, description="jitter: saturation factor in [1-s, 1+s]")
    hue: float = Field(0.1, ge=0, le=0.5, description="jitter: hue shift in [-h, h] (of a full turn)")
    grayscale: float = Field(0.0, ge=0, le=1, description="probability of grayscale")
    blur: float = Field(0.0, ge=0, le=1, description="probability of a Gaussian blur")
    blur_sigma: tuple[float, float] = Field((0.1, 2.0), description="blur: range of sigma in pixels")
    solarize: float = Field(0.0, ge=0, le=1, description="probability of solarisation (x >= 0.5 -> 1 - x)")

    @model_validator(mode="after")
    def _ranges(self) -> View:
        for name in ("scale", "ratio", "blur_sigma"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"{name} needs 0 < min <= max (got {lo}, {hi})")
        if self.scale[1] > 1:
            raise ValueError(f"scale is a fraction of the image's area: at most 1 (got {self.scale[1]})")
        return self
