"""hlbench: benchmarking and profiling for language-model training.

`import hlbench` imports no framework, nor pandas: PyTorch and TensorFlow are loaded only by the
worker process that trains a cell (see hlbench.backends). The Python API (`hlbench.run`, `load`,
`compare`, `report`; hlbench.api, docs/api.md) is loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Loaded on first access rather than imported here: the worker imports hlbench and needs none of
# it, and a package module that imports no submodule keeps the modules that read
# hlbench.__version__ (records, env, cli) out of an import cycle through the API.
API_NAMES = ("Comparison", "Run", "compare", "load", "report", "run")
__all__ = ["__version__", *API_NAMES]


def __getattr__(name: str) -> Any:
    if name in API_NAMES:
        return getattr(importlib.import_module("hlbench.api"), name)
    raise AttributeError(f"module 'hlbench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *API_NAMES})
