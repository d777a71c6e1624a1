"""Framework-neutral model specs: architecture, parameter names/shapes, reference init, FLOPs.

Imports only numpy and the standard library; backends translate a spec into framework modules.
"""

from __future__ import annotations

import dataclasses

from hlbench.workloads import gpt, lstm
from hlbench.workloads.base import ModelSpec
from hlbench.workloads.gpt import GPTSpec
from hlbench.workloads.lstm import LSTMSpec

__all__ = ["MODELS", "ModelSpec", "GPTSpec", "LSTMSpec", "get_spec"]

MODELS: dict[str, dict[str, ModelSpec]] = {"gpt": dict(gpt.PRESETS), "lstm": dict(lstm.PRESETS)}


def get_spec(model: str, size: str, vocab_size: int | None = None) -> ModelSpec:
    """The preset `size` of `model`, with its vocabulary replaced by `vocab_size` when given (e.g. a
    synthetic corpus with 256 symbols)."""
    if model not in MODELS:
        raise ValueError(f"unknown model '{model}'; choose from: {', '.join(MODELS)}")
    presets = MODELS[model]
    if size not in presets:
        raise ValueError(f"unknown size '{size}' for model '{model}'; choose from: "
                         f"{', '.join(presets)}")
    spec = presets[size]
    if vocab_size is None:
        return spec
    return dataclasses.replace(spec, vocab_size=vocab_size)  # re-runs validation in __post_init__
