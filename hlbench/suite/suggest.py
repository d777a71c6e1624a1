""" "Did you mean" for a suite's unknown keys and values.

The known keys come from the schema itself (the pydantic models' fields, walked along the error's
key path), and the known values from pydantic's own error context or the lists the loader checks
against, so a key or value added to the schema is suggested with no change here.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel


def did_you_mean(word: Any, choices: Iterable[Any]) -> str:
    """'; did you mean 'x'?' for the closest of `choices`, or '' when none is close."""
    close = closest(word, choices)
    return f"; did you mean {close!r}?" if close else ""


def closest(word: Any, choices: Iterable[Any]) -> str | None:
    """The choice closest to `word` (difflib's ratio), or None when none is close."""
    if not isinstance(word, str):
        return None
    names = [str(c) for c in choices if str(c) != word]
    close = difflib.get_close_matches(word, names, n=1, cutoff=0.6)
    if not close:  # a case slip (FP32) can be too far for difflib's ratio on short words
        close = [n for n in names if n.lower() == word.lower()]
    return close[0] if close else None


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation holds: itself, or inside Optional, list, dict, Annotated
    and unions (a discriminated union gives each of its models)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin is None and not isinstance(annotation, types.UnionType):
        return []
    found: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        found += [m for m in _models_in(arg) if m not in found]
    return found


def known_keys(model: type[BaseModel], loc: Sequence[Any]) -> list[str]:
    """The keys the models at `loc[:-1]` (a pydantic error's location, below `model`) accept."""
    models = [model]
    for part in loc[:-1]:
        if not isinstance(part, str):
            continue  # a list index
        holders = [m for m in models if part in m.model_fields]
        if holders:
            models = [
                inner for m in holders for inner in _models_in(m.model_fields[part].annotation)
            ]
        else:  # a union's tag ('markov'); keep the members whose `kind` is that tag
            tagged = [m for m in models if _tag(m) == part]
            models = tagged or models
        if not models:
            return []
    return sorted({name for m in models for name in m.model_fields})


def _tag(model: type[BaseModel]) -> str | None:
    field = model.model_fields.get("kind")
    args = typing.get_args(field.annotation) if field is not None else ()
    return args[0] if len(args) == 1 and isinstance(args[0], str) else None


def literal_choices(error: dict[str, Any]) -> list[str]:
    """The values a pydantic literal_error allows ("'fp32', 'tf32' or 'bf16'")."""
    expected = str((error.get("ctx") or {}).get("expected", ""))
    return re.findall(r"'([^']*)'", expected)
