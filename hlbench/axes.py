"""The matrix axes as data: each axis has its declared values and a short form for cell ids.

A value being *declared* here means a suite may name it; whether a backend *implements* it is the
backend's business (hlbench.backends). Later axes (augmentation) are added here as rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

PRECISIONS = ("fp32", "tf32", "bf16", "fp16", "bf16-pure", "fp8")
PRUNING_METHODS = ("none", "magnitude", "structured", "2:4")
AUGMENTATION_METHODS = ("none", "token_replace", "token_mask", "span_delete")


@dataclass(frozen=True)
class Axis:
    name: str
    doc: str
    short: Callable[[Any], str]  # the value as it appears in a cell id


AXES: tuple[Axis, ...] = (
    Axis("precision", f"numeric precision; one of {', '.join(PRECISIONS)}", str),
    Axis(
        "accumulation",
        "gradient-accumulation steps per optimizer step (positive int)",
        lambda k: f"ga{k}",
    ),
    Axis(
        "pruning",
        f"pruning: a method ({', '.join(PRUNING_METHODS)}) or a variant named in the suite",
        str,
    ),
    # false: PyTorch eager, TensorFlow tf.function graph; true: torch.compile, tf.function + XLA.
    # In ids only when true ("/compile"), so the common uncompiled ids stay short.
    Axis(
        "compile",
        "compile the train step: torch.compile / XLA jit_compile (false | true)",
        lambda c: "compile" if c else "",
    ),
    Axis(
        "augmentation",
        f"data augmentation: a method ({', '.join(AUGMENTATION_METHODS)}) or a named variant",
        lambda a: "" if a == "none" else a,
    ),
)
AXIS_NAMES = tuple(axis.name for axis in AXES)
