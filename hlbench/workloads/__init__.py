"""Framework-neutral model specs: architecture, parameter names/shapes, reference init, FLOPs.

Imports only numpy and the standard library; backends translate a spec into framework modules.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hlbench.workloads import custom, gpt, llama, lstm
from hlbench.workloads.base import ModelSpec
from hlbench.workloads.custom import CustomSpec
from hlbench.workloads.gpt import GPTSpec
from hlbench.workloads.llama import LlamaSpec
from hlbench.workloads.lstm import LSTMSpec

__all__ = [
    "MODELS",
    "ModelSpec",
    "CustomSpec",
    "GPTSpec",
    "LlamaSpec",
    "LSTMSpec",
    "get_spec",
    "model_spec",
]

MODELS: dict[str, dict[str, ModelSpec]] = {
    "gpt": dict(gpt.PRESETS),
    "lstm": dict(lstm.PRESETS),
    "llama": dict(llama.PRESETS),
}


def get_spec(model: str, size: str, vocab_size: int | None = None) -> ModelSpec:
    """The preset `size` of `model`, with its vocabulary replaced by `vocab_size` when given (e.g. a
    synthetic corpus with 256 symbols)."""
    if model not in MODELS:
        raise ValueError(f"unknown model '{model}'; choose from: {', '.join(MODELS)}")
    presets = MODELS[model]
    if size not in presets:
        raise ValueError(
            f"unknown size '{size}' for model '{model}'; choose from: {', '.join(presets)}"
        )
    spec = presets[size]
    if vocab_size is None:
        return spec
    return dataclasses.replace(spec, vocab_size=vocab_size)  # re-runs validation in __post_init__


def model_spec(cell: Any) -> ModelSpec:
    """The model a cell (hlbench.cell.Cell) trains: its workload's preset, with the vocabulary of
    its corpus and, after a structured `shrink`, fewer heads / MLP neurons
    (hlbench.techniques.driver)."""
    ref = cell.workload.spec  # a hlbench.cell.ModelRef
    if ref.model in custom.MODELS:  # built by the backend (hlbench.workloads.custom)
        return custom.from_ref(ref.to_dict())
    base = get_spec(ref.model, ref.size, ref.vocab_size)
    shrunk = {k: v for k in ("n_head_kept", "d_mlp") if (v := getattr(ref, k)) is not None}
    return dataclasses.replace(base, **shrunk) if shrunk else base
