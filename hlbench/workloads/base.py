"""The framework-neutral contract every model spec satisfies.

A spec is a frozen description of an architecture plus its reference initialisation. Backends
(PyTorch, TensorFlow) build their modules from it and load `init_weights(seed)`, so every framework
starts a cell from bit-identical weights. Layout convention: dense kernels are (in_features,
out_features), the GPT-2/Keras layout; a backend that stores (out, in) transposes on load.
"""

from __future__ import annotations

import abc
import dataclasses
import math
import zlib
from typing import Any

import numpy as np


def tensor_rng(seed: int, name: str) -> np.random.Generator:
    """One generator per (seed, tensor name).

    Seeding by name rather than drawing every tensor from one stream means a tensor's values do not
    depend on which other tensors exist or their order: changing the vocabulary re-draws `wte` only.
    """
    return np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])


def normal(seed: int, name: str, shape: tuple[int, ...], std: float) -> np.ndarray:
    """float32 Normal(0, std); drawn directly in float32 because gpt2-124m init must be fast."""
    out = tensor_rng(seed, name).standard_normal(shape, dtype=np.float32)
    out *= np.float32(std)
    return out


def uniform(seed: int, name: str, shape: tuple[int, ...], bound: float) -> np.ndarray:
    """float32 Uniform(-bound, bound)."""
    out = tensor_rng(seed, name).random(shape, dtype=np.float32)
    out *= np.float32(2.0 * bound)
    out -= np.float32(bound)
    return out


@dataclasses.dataclass(frozen=True)
class ModelSpec(abc.ABC):
    """Abstract base: `model`, `size`, `vocab_size`, plus a subclass's architecture fields."""

    model: str
    size: str
    vocab_size: int

    def __post_init__(self) -> None:
        # Every int field is a count or a dimension; a zero or negative one is always a typo.
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            is_int = isinstance(value, int) and not isinstance(value, bool)
            if field.type in ("int", int) and not (is_int and value >= 1):
                raise ValueError(
                    f"{self.model} spec '{self.size}': {field.name} must be a "
                    f"positive integer, got {value!r}"
                )

    @property
    @abc.abstractmethod
    def context(self) -> int | None:
        """Longest sequence (tokens) the model accepts; None when unbounded."""

    @abc.abstractmethod
    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every parameter tensor's name and shape, in a fixed order."""

    @abc.abstractmethod
    def init_weights(self, seed: int) -> dict[str, np.ndarray]:
        """float32 reference weights; same keys, order and shapes as `param_shapes()`."""

    @property
    @abc.abstractmethod
    def n_params_flops(self) -> int:
        """The N of the FLOPs formula: parameters that take part in a matmul (lookups excluded)."""

    @abc.abstractmethod
    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs (forward + backward) per token at sequence length `seq_len`."""

    @property
    def flops_source(self) -> str:
        """Where `flops_per_token` comes from: the spec's formula (a custom model's is counted)."""
        return "formula"

    @property
    def initial_weights(self) -> str:
        """What the initial weights are, for the record (a custom model has its own)."""
        return "reference: NumPy from the seed, identical in every framework"

    @property
    def n_params(self) -> int:
        """All parameters; a tied tensor is one tensor, so it is counted once."""
        return sum(math.prod(shape) for shape in self.param_shapes().values())

    def decayed(self, name: str) -> bool:
        """Whether AdamW weight decay applies: every tensor with ndim >= 2 (matrices and embeddings,
        the nanoGPT convention); biases and LayerNorm gains/biases are not decayed."""
        shapes = self.param_shapes()
        if name not in shapes:
            raise ValueError(
                f"unknown parameter '{name}' for {self.model} '{self.size}'; "
                f"parameters are: {', '.join(shapes)}"
            )
        return len(shapes[name]) >= 2

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of every field (records and the cell's content hash use it)."""
        return dataclasses.asdict(self)

    def _check_seq_len(self, seq_len: int) -> None:
        if not isinstance(seq_len, int) or isinstance(seq_len, bool) or seq_len < 1:
            raise ValueError(f"seq_len must be a positive integer, got {seq_len!r}")
        if self.context is not None and seq_len > self.context:
            raise ValueError(
                f"seq_len {seq_len} exceeds {self.model} '{self.size}' context of "
                f"{self.context} tokens"
            )
