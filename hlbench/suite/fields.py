"""Constrained field types and the strict base model every suite section is validated with."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from hlbench.suite.yamlio import quote

PositiveInt = Annotated[int, Field(gt=0, le=1 << 20)]  # a batch, a length, a count of ranks
Steps = Annotated[int, Field(gt=0, le=10_000_000)]
Repeats = Annotated[int, Field(gt=0, le=10_000)]
Seconds = Annotated[float, Field(gt=0, le=30 * 86400)]  # at most 30 days
SAFE_NAME = r"^[A-Za-z0-9._-]{1,100}$"  # a path component (and not only dots: see not_dots)


class StrictModel(BaseModel):
    # strict: no "4" -> 4 coercion; a suite says what it means. Ints are still accepted for floats.
    # allow_inf_nan=False: a learning rate of .inf would train to NaN and still look "ok"
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


def not_dots(name: str | None) -> str | None:
    """A name that becomes a path component: '.' and '..' would leave results/<suite>/."""
    if name is not None and not name.strip("."):
        raise ValueError(f"{quote(name)} is not a usable name (only dots)")
    return name
