"""The backend registry: names → lightweight specs, importable without any framework.

A spec says which framework a backend needs, where its adapter class lives (imported only in the
worker process) and which axis values it implements. Values a backend does not implement become
`skipped` records with the reason, never a silent fallback.

Extra backends (third-party adapters, or the fault-injecting backend of the test suite) are added
with the environment variable HLBENCH_BACKENDS="name=package.module:SPEC[,name2=...]", where SPEC is
a BackendSpec object in an import-light module.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass, field
from typing import Any

from hlbench.axes import PRECISIONS, PRUNING_METHODS
from hlbench.errors import UsageError


@dataclass(frozen=True)
class BackendSpec:
    name: str
    framework: str  # the import name of the framework package, e.g. "torch"
    adapter: str  # "module:Class" of the Backend implementation; imported in the worker only
    supports: dict[str, frozenset[Any]] = field(default_factory=dict)  # axis -> implemented values
    install_hint: str = ""
    # (axis, value) -> why this backend will never run it, where "not implemented yet" would mislead
    reasons: dict[tuple[str, Any], str] = field(default_factory=dict)

    def unsupported_reason(self, axes: dict[str, Any]) -> str | None:
        """Why this backend cannot run a cell with these axis values, or None if it can."""
        for axis, value in axes.items():
            implemented = self.supports.get(axis)
            if implemented is not None and value not in implemented:
                return self.reasons.get(
                    (axis, value),
                    f"{axis} {value!r} is not implemented in the {self.name} backend yet",
                )
        return None

    def unsupported_reason_for(self, cell: Any) -> str | None:
        """`unsupported_reason` for a cell, judging a named pruning/augmentation variant by its
        method."""
        axes = dict(cell.axes)
        for axis in ("pruning", "augmentation"):
            method = (getattr(cell, "techniques", None) or {}).get(axis, {}).get("method")
            if method is not None:
                axes[axis] = method
        return self.unsupported_reason(axes)

    def framework_installed(self) -> bool:
        """Whether the framework can be found, without importing it (TensorFlow's import takes
        seconds)."""
        try:
            return importlib.util.find_spec(self.framework) is not None
        except (ImportError, ValueError):  # a broken or deliberately blocked installation
            return False


TORCH = BackendSpec(
    name="torch",
    framework="torch",
    adapter="hlbench.backends.torch.backend:TorchBackend",
    # tf32 and fp8 are implemented; whether the device can run them is decided in build()
    # (SkipCell).
    supports={
        "precision": frozenset(PRECISIONS),
        "pruning": frozenset(PRUNING_METHODS),
        "compile": frozenset({False, True}),
    },
    # A command that works from a clone and from a wheel; which torch build suits this machine
    # (CPU-only or CUDA) is in the README's Install section, per platform.
    install_hint="install it: pip install torch, or in the hlbench clone pip install -c "
    'constraints.txt -e ".[torch]" (CPU-only and CUDA builds: docs/install.md)',
)

TF = BackendSpec(
    name="tf",
    framework="tensorflow",
    adapter="hlbench.backends.tf.backend:TFBackend",
    supports={
        "precision": frozenset(PRECISIONS) - {"fp8"},
        "pruning": frozenset(PRUNING_METHODS),
        "compile": frozenset({False, True}),
    },
    install_hint="install it: pip install tensorflow-cpu (Linux x86-64) or tensorflow (macOS, "
    'NVIDIA GPUs: "tensorflow[and-cuda]"), or in the hlbench clone pip install -c '
    'constraints.txt -e ".[tf]" (docs/install.md)',
    reasons={
        ("precision", "fp8"): "fp8 is not available in TensorFlow (float8 training exists only for "
        "PyTorch, through torchao)"
    },
)

_BUILTIN: dict[str, BackendSpec] = {TORCH.name: TORCH, TF.name: TF}


def registry() -> dict[str, BackendSpec]:
    """Built-in backends plus those named in HLBENCH_BACKENDS."""
    backends = dict(_BUILTIN)
    for item in filter(
        None, (s.strip() for s in os.environ.get("HLBENCH_BACKENDS", "").split(","))
    ):
        name, _, target = item.partition("=")
        shown = repr(item) if len(item) <= 60 else repr(item[:57] + "...")
        try:
            spec = _load_object(target, f"HLBENCH_BACKENDS entry {shown}")
        except (Exception, SystemExit) as exc:  # any failure of the module's import is the entry's
            if isinstance(exc, UsageError):
                message = " ".join(str(exc).split())
                raise UsageError(message[:177] + "..." if len(message) > 180 else message) from None
            reason = " ".join(f"{type(exc).__name__}: {exc}".split())
            reason = reason if len(reason) <= 80 else reason[:77] + "..."
            raise UsageError(
                f"HLBENCH_BACKENDS entry {shown}: its import failed: {reason}"
            ) from None
        if not isinstance(spec, BackendSpec) or spec.name != name:
            raise UsageError(
                f"HLBENCH_BACKENDS entry {shown}: expected a BackendSpec named {name!r}"
            )
        backends[name] = spec
    return backends


def get_spec(name: str) -> BackendSpec:
    backends = registry()
    if name not in backends:
        raise UsageError(f"unknown backend {name!r}; choose from: {', '.join(sorted(backends))}")
    return backends[name]


def load_adapter(spec: BackendSpec) -> Any:
    """Import and instantiate the adapter (worker side: this imports the framework)."""
    return _load_object(spec.adapter, f"backend {spec.name!r}")()


def _load_object(target: str, what: str) -> Any:
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise UsageError(f"{what}: expected 'package.module:NAME', got {target!r}")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"{what}: cannot load {target!r}: {exc}") from None
