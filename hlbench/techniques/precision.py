"""The precision levels (docs/design.md, Precision) as data, and the check that what ran matches the
label.

Framework-free: both backends read the same table, report what they observed in their first step in
framework-neutral dtype names ("float32", "bfloat16", "float16"), and call `check_observed`, which
raises PrecisionViolation when the observation contradicts the label. The worker turns that
exception into an `error` record, so a cell that silently ran another precision can never be
reported as `ok`.

What is observed (each backend, first optimizer step only, nothing in the measured steps):
- param: the storage dtype of every trainable parameter (one name, or a mismatch if they differ);
- matmul_output: the dtype of the logits, the output of the forward pass's last matmul (the tied
  head of the GPT, the linear head of the LSTM), observed outside the model so torch.compile and
  XLA see no hook;
- recurrent_output (LSTM only): the output dtype of the recurrent layer;
- grad: the dtype of every parameter's accumulated gradient before the optimizer step;
- optimizer_state: the dtype of AdamW's moments;
- tf32: whether fp32 matmuls may use TF32 (true only for the tf32 level).

Also here: rounding of NumPy float32 arrays to bfloat16/float16 storage (round to nearest even, what
both frameworks' casts do), so parity checks can compare the loaded weights of a bf16-pure model
with the NumPy initial weights exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hlbench.techniques import test_hooks

FLOAT32, BFLOAT16, FLOAT16 = "float32", "bfloat16", "float16"


class PrecisionViolation(RuntimeError):
    """The dtypes a cell actually used contradict its precision label."""


@dataclass(frozen=True)
class Level:
    name: str
    param: str  # storage dtype of the parameters (the master weights)
    compute: str  # dtype of matmul outputs in the forward pass
    grad: str  # dtype of the accumulated gradients
    optimizer_state: str  # dtype of AdamW's moments
    tf32: bool = False  # fp32 matmuls may run in TF32
    loss_scaling: bool = False  # dynamic loss scaling (GradScaler's algorithm)
    min_cuda_capability: tuple[int, int] | None = None  # None: runs on any device
    doc: str = ""


LEVELS: dict[str, Level] = {
    level.name: level
    for level in (
        Level(
            "fp32",
            FLOAT32,
            FLOAT32,
            FLOAT32,
            FLOAT32,
            doc="everything fp32; TF32 off in both frameworks",
        ),
        Level(
            "tf32",
            FLOAT32,
            FLOAT32,
            FLOAT32,
            FLOAT32,
            tf32=True,
            min_cuda_capability=(8, 0),
            doc="fp32 storage, TF32 matmuls on; NVIDIA Ampere or newer only",
        ),
        Level(
            "bf16",
            FLOAT32,
            BFLOAT16,
            FLOAT32,
            FLOAT32,
            doc="mixed: fp32 master weights, bf16 compute (torch.autocast / casts at use in TF)",
        ),
        Level(
            "fp16",
            FLOAT32,
            FLOAT16,
            FLOAT32,
            FLOAT32,
            loss_scaling=True,
            doc="mixed fp16 with dynamic loss scaling (GradScaler's algorithm in both)",
        ),
        Level(
            "bf16-pure",
            BFLOAT16,
            BFLOAT16,
            BFLOAT16,
            BFLOAT16,
            doc="parameters, gradients and AdamW state in bf16",
        ),
        # float8 matmuls (torchao) inside bf16 autocast, as torchao and torchtitan run them: the
        # linear layers' outputs are bf16, the master weights and their gradients fp32.
        Level(
            "fp8",
            FLOAT32,
            BFLOAT16,
            FLOAT32,
            FLOAT32,
            min_cuda_capability=(8, 9),
            doc="PyTorch only: float8 linear layers (torchao) in bf16 autocast; compute capability "
            "≥ 8.9",
        ),
    )
}

# GradScaler's defaults (torch.amp.GradScaler), used by both backends' dynamic loss scaling.
LOSS_SCALE_INIT = 2.0**16
LOSS_SCALE_GROWTH_FACTOR = 2.0
LOSS_SCALE_BACKOFF_FACTOR = 0.5
LOSS_SCALE_GROWTH_INTERVAL = 2000  # consecutive finite steps before the scale grows


def level(name: str) -> Level:
    if name not in LEVELS:
        raise ValueError(f"unknown precision {name!r}; choose from: {', '.join(LEVELS)}")
    return LEVELS[name]


def expected(name: str) -> dict[str, Any]:
    """The observation a correct run of level `name` produces."""
    lv = level(name)
    return {
        "param": lv.param,
        "matmul_output": lv.compute,
        "grad": lv.grad,
        "optimizer_state": lv.optimizer_state,
        "tf32": lv.tf32,
    }


def check_observed(name: str, observed: dict[str, Any]) -> None:
    """Raise PrecisionViolation naming every observed dtype that contradicts level `name`.

    Keys of `expected` that are missing from `observed` are violations too: an unobserved dtype
    proves nothing. An LSTM's own output (`recurrent_output`, where observed) must be in the
    compute dtype as well: the recurrence is most of that model's work, not only its head.
    """
    want = expected(name)
    if "recurrent_output" in observed:
        want["recurrent_output"] = level(name).compute
    wrong = [
        f"{key}: expected {value}, observed {observed.get(key, 'nothing')}"
        for key, value in want.items()
        if observed.get(key) != value
    ]
    if wrong:
        raise PrecisionViolation(f"precision {name!r} did not run as labelled: " + "; ".join(wrong))


def single_dtype(names: list[str]) -> str:
    """One dtype name for a set of tensors, or 'mixed(a,b)' when they differ (then a check
    fails)."""
    unique = sorted(set(names))
    return unique[0] if len(unique) == 1 else f"mixed({','.join(unique)})"


def applied_dtypes(level: Level) -> tuple[str, str]:
    """(parameter, compute) dtype names a backend applies for `level`: the label's own, except under
    the test-only mismatch injection, which runs something else so the first-step check must
    fail."""
    if not test_hooks.precision_mismatch():
        return level.param, level.compute
    return FLOAT32, BFLOAT16 if level.compute == FLOAT32 else FLOAT32


def round_to_storage(array: np.ndarray, dtype: str) -> np.ndarray:
    """float32 `array` as stored in `dtype` (returned as float32): round to nearest, ties to
    even."""
    a = np.asarray(array, dtype=np.float32)
    if dtype == FLOAT32:
        return a
    if dtype == FLOAT16:
        return a.astype(np.float16).astype(np.float32)
    if dtype == BFLOAT16:  # the top 16 bits of float32, rounded to nearest even (finite inputs)
        bits = a.view(np.uint32).astype(np.uint64)
        rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
        return rounded.astype(np.uint32).view(np.float32)
    raise ValueError(f"unknown storage dtype {dtype!r}")
