"""The base of every plugin's options: a frozen pydantic model that refuses unknown keys."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Config(BaseModel):
    """Base of every plugin config: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)
