"""What the parent (hlbench.sweep) and the child (hlbench.worker) agree on, and nothing else: the
files
a cell is handed over and answered in, the environment variables the parent sets for a worker, and
how a worker knows its rank. Both sides import this module; neither imports the other.

A cell travels as `cell.json` (Cell.to_dict) in a fresh temporary directory; the worker answers in
`result.json` beside it (the chief's, with all ranks' figures combined) and, in a data-parallel
cell, every rank also in its own `result.rank<R>.json`.
"""

from __future__ import annotations

import os
from pathlib import Path

WORKER_MODULE = "hlbench.worker"  # started as `python -m hlbench.worker CELL_JSON RESULT_JSON`
CELL_FILE = "cell.json"
RESULT_FILE = "result.json"
RANK_ENV = "HLBENCH_RANK"  # a process's rank when no launcher sets RANK (TF multi_worker)
PROFILE_DIR_ENV = "HLBENCH_PROFILE_DIR"  # set for a worker when profiling is on: where traces go
# the pid of `hlbench run`, set for every process of a cell: a worker whose parent is gone exits
PARENT_PID_ENV = "HLBENCH_PARENT_PID"


def cuda_visible_devices() -> list[str] | None:
    """The entries of CUDA_VISIBLE_DEVICES (GPU indices or UUIDs, in CUDA's order), or None when it
    is
    unset (every GPU is visible). The one reading of it: the parent maps devices through it, a
    worker
    is given a narrowed one, telemetry maps CUDA's numbering to NVML's through it."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return None
    return [entry.strip() for entry in visible.split(",") if entry.strip()]


def rank_result_path(result_file: Path, rank: int) -> Path:
    """Where rank `rank` writes its own outcome, beside the chief's `result_file`."""
    return result_file.with_name(f"{result_file.stem}.rank{rank}.json")


def rank_from_env() -> int:
    """This process's rank: the runner's HLBENCH_RANK, which it sets for every process it starts
    itself
    (so a RANK inherited from the user's shell or a cluster pod cannot pick the wrong chief), else
    torchrun's RANK (the runner sets HLBENCH_RANK empty for torchrun's ranks), else 0."""
    return int(os.environ.get(RANK_ENV) or os.environ.get("RANK") or 0)
