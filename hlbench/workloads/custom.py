"""Models hlbench does not define: a user's factory (`model: custom`) or a Hugging Face
transformers architecture built from a config in the suite (`model: hf`).

hlbench owns everything but the module: data, loss, AdamW, precision, accumulation, pruning of the
linear kernels, compile, telemetry and records. What a neutral spec holds for its built-in
workloads (parameter names and shapes, initial weights, FLOPs) is known here only once a backend
has built the model, in the worker: the backend returns the spec with `built` set
(Backend.resolve_spec), and `remember` keeps it so that later look-ups of the same cell in that
process (hlbench.workloads.model_spec) see it. The weights are the module's own initialisation,
seeded from the cell's seed: they are not the same in two frameworks (no cross-framework parity).

A factory reference is "package.module:NAME" (importable in the worker) or "path/file.py:NAME" (the
suite loader makes the path absolute and hashes the file, so editing the model changes the cell
hash). This module imports no framework; importing the user's code does, in the worker only.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from hlbench.workloads.base import ModelSpec

MODELS = ("custom", "hf")
# The fields a cell records (ModelRef); `built` is the worker's, never part of a cell.
REF_FIELDS = (
    "model",
    "size",
    "vocab_size",
    "factory",
    "kwargs",
    "factory_sha256",
    "architecture",
    "config",
)
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
NO_PARITY = (
    "none: the model's own initialisation, seeded from the cell's seed; another framework's "
    "model starts elsewhere"
)


class CustomModelError(ValueError):
    """A factory that cannot be imported, raises, or returns something that is not a model
    mapping (B, T) ids to (B, T, V) logits. The message is one line; the worker records it."""


@dataclasses.dataclass(frozen=True)
class Built:
    """What a backend learnt by building the model (the worker's; never in a cell or a hash).

    `shapes` are in the neutral layout (dense kernels (in, out): a torch Linear's weight is
    transposed); `kernels` the linear kernels pruning acts on; `weights` float32 copies of the
    initial parameters under the same names; `module` the framework object, reused by the
    trainer so that the model is not built twice."""

    shapes: dict[str, tuple[int, ...]]
    kernels: tuple[str, ...]
    weights: dict[str, np.ndarray]
    transposed: frozenset[str]
    seq_len: int
    flops_per_token: float | None
    flops_source: str
    module: Any = None


@dataclasses.dataclass(frozen=True)
class CustomSpec(ModelSpec):
    """`custom`: `factory` maps a framework (torch, tf) to its factory reference, `kwargs` are
    passed to it. `hf`: a transformers `architecture` (e.g. LlamaForCausalLM) and its `config`
    keys. `factory_sha256`: the content hash of each file factory."""

    factory: dict[str, str] | None = None
    kwargs: dict[str, Any] | None = None
    factory_sha256: dict[str, str] | None = None
    architecture: str | None = None
    config: dict[str, Any] | None = None
    built: Built | None = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def context(self) -> int | None:
        # a custom module's limit is its own business (a longer sequence fails in the worker)
        if self.config and isinstance(self.config.get("max_position_embeddings"), int):
            return self.config["max_position_embeddings"]
        return None

    def require_built(self) -> Built:
        if self.built is None:
            raise ValueError(
                f"{self.model} model: its parameters are known only once a backend has built it"
            )
        return self.built

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return dict(self.require_built().shapes)

    def init_weights(self, seed: int) -> dict[str, np.ndarray]:
        """The module's own initial weights (built with the cell's seed), copied."""
        return {name: array.copy() for name, array in self.require_built().weights.items()}

    @property
    def kernels(self) -> list[str]:
        """The linear kernels (magnitude and 2:4 pruning act on them; embeddings excluded, a head
        tied to an embedding too)."""
        return list(self.require_built().kernels)

    def kernel_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = self.require_built().shapes
        return {name: shapes[name] for name in self.require_built().kernels}

    @property
    def n_params_flops(self) -> int:
        return sum(int(np.prod(shape)) for shape in self.kernel_shapes().values())

    def flops_per_token(self, seq_len: int) -> float | None:  # type: ignore[override]
        """Counted by the backend at the cell's sequence length (None: could not be counted)."""
        self._check_seq_len(seq_len)
        built = self.require_built()
        if seq_len != built.seq_len:
            raise ValueError(f"FLOPs were counted at seq_len {built.seq_len}, not {seq_len}")
        return built.flops_per_token

    @property
    def flops_source(self) -> str:
        return self.require_built().flops_source

    @property
    def initial_weights(self) -> str:
        return NO_PARITY

    def factory_for(self, framework: str) -> str | None:
        return (self.factory or {}).get(framework)

    def to_dict(self) -> dict[str, Any]:
        values = {name: getattr(self, name) for name in REF_FIELDS}
        return {k: v for k, v in values.items() if v is not None}


def from_ref(ref: dict[str, Any]) -> CustomSpec:
    """The spec of a cell's ModelRef dict: the one a backend built in this process when there is
    one (`remember`), else an unbuilt one."""
    key = _key(ref)
    if key in _BUILT:
        return _BUILT[key]
    return CustomSpec(**{k: v for k, v in ref.items() if k in REF_FIELDS})


def remember(spec: CustomSpec) -> CustomSpec:
    """Keep a built spec for later look-ups of the same cell in this (worker) process."""
    _BUILT.clear()  # a worker builds one model; never hold two
    _BUILT[_key(spec.to_dict())] = spec
    return spec


_BUILT: dict[str, CustomSpec] = {}


def _key(ref: dict[str, Any]) -> str:
    return json.dumps({k: ref.get(k) for k in REF_FIELDS}, sort_keys=True, default=str)


# ------------------------------------------------------------------ factory references


def split_ref(ref: str) -> tuple[str, list[str], bool]:
    """(module or file path, attribute path, whether it names a file) of "target:NAME"; a
    ValueError says what is wrong with it."""
    target, sep, attr = ref.rpartition(":")
    if not sep or not target or not attr:
        raise ValueError(f"expected 'package.module:NAME' or 'file.py:NAME', got {ref!r}")
    names = attr.split(".")
    if not all(IDENTIFIER.fullmatch(n) for n in names):
        raise ValueError(f"{attr!r} is not a Python name")
    is_file = target.endswith(".py") or "/" in target or "\\" in target
    if not is_file and not all(IDENTIFIER.fullmatch(p) for p in target.split(".")):
        raise ValueError(f"{target!r} is neither a module name nor a .py file")
    return target, names, is_file


def load_factory(ref: str) -> Callable[..., Any]:
    """The callable a reference names, importing its module (a file under a private module name,
    its directory on sys.path while it is imported, so that it can import its neighbours)."""
    target, names, is_file = split_ref(ref)
    try:
        module = _import_file(Path(target)) if is_file else importlib.import_module(target)
    except Exception as exc:  # the user's module: any failure of its import is the factory's
        raise CustomModelError(f"factory {ref!r}: its import failed: {_one_line(exc)}") from None
    obj: Any = module
    for name in names:
        if not hasattr(obj, name):
            raise CustomModelError(f"factory {ref!r}: {target} has no attribute {name!r}")
        obj = getattr(obj, name)
    if not callable(obj):
        raise CustomModelError(f"factory {ref!r}: {type(obj).__name__} is not callable")
    return obj


def _import_file(path: Path) -> Any:
    name = f"hlbench_factory_{abs(hash(str(path)))}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # as an import would: dataclasses and pickling look it up there
    sys.path.insert(0, str(path.parent))
    try:
        module_spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    return module


def call_factory(ref: str, kwargs: dict[str, Any], implicit: dict[str, Any]) -> Any:
    """The factory's model: called with the suite's kwargs, plus the `implicit` values
    (vocab_size, seq_len) its signature asks for that kwargs do not set."""
    factory = load_factory(ref)
    args = dict(kwargs)
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # a builtin or C callable: no signature to read
        params = {}
    for key, value in implicit.items():
        if key in params and key not in args:
            args[key] = value
    try:
        return factory(**args)
    except Exception as exc:
        raise CustomModelError(f"factory {ref!r} raised {_one_line(exc)}") from None


def check_logits_shape(ref: str, shape: Any, batch: int, seq_len: int, vocab_size: int) -> None:
    """CustomModelError unless the model's output for (batch, seq_len) ids has the logits' shape."""
    want = (batch, seq_len, vocab_size)
    if tuple(shape) != want:
        raise CustomModelError(
            f"{ref}: the model maps ids {(batch, seq_len)} to shape {tuple(shape)}; expected "
            f"logits {want} (batch, seq_len, vocab_size)"
        )


def _one_line(exc: BaseException) -> str:
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= 300 else text[:297] + "..."
