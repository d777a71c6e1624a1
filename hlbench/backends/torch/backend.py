"""The PyTorch backend adapter: the record's environment, the process group of a data-parallel cell,
and the checks that decide whether a cell can run here before its trainer is built.

The trainer is hlbench.backends.torch.trainer; precision setup amp, data parallel distribute.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from hlbench.backends import TORCH
from hlbench.backends.base import Backend
from hlbench.backends.torch import amp, distribute
from hlbench.backends.torch.device import framework_environment, resolve_device
from hlbench.backends.torch.trainer import TorchTrainer
from hlbench.cell import Cell
from hlbench.errors import SkipCell
from hlbench.techniques import oom, precision
from hlbench.workloads import CustomSpec, ModelSpec


class TorchBackend(Backend):
    name = "torch"

    def prepare(self, cell: Cell) -> None:
        """Data parallel: join torchrun's process group, NCCL on GPUs, gloo on CPUs."""
        distribute.join_process_group(cell)

    def shutdown(self) -> None:
        distribute.leave_process_group()

    def environment(self, device: str) -> dict[str, Any]:
        return framework_environment()

    def resolve_spec(self, cell: Cell, spec: ModelSpec) -> ModelSpec:
        """A custom or hf model: built here from the cell's seed (hlbench.backends.torch.custom)."""
        if not isinstance(spec, CustomSpec):
            return spec
        from hlbench.backends.torch.custom import build_spec

        return build_spec(cell, spec)

    def build(
        self, cell: Cell, spec: ModelSpec, level: precision.Level, weights: dict[str, np.ndarray]
    ) -> TorchTrainer:
        device = resolve_device(cell.device, data_parallel=bool(cell.launch))
        reason = unsupported_reason(cell)
        if reason:
            raise SkipCell(reason)
        amp.require_device_for(level, device)
        if cell.launch and cell.launch.strategy == "fsdp" and level.loss_scaling:
            # found_inf would be judged per shard, so ranks could disagree on skipping a step
            raise SkipCell(
                "fp16 with fsdp: loss scaling over sharded gradients needs a sharded grad scaler, "
                "which hlbench does not wire up; use bf16 or ddp"
            )
        amp.set_tf32(level.tf32)
        return TorchTrainer(cell, spec, level, weights, device)

    def is_oom(self, exc: BaseException) -> bool:
        # every allocator message of the table, "DefaultCPUAllocator: can't allocate memory" too
        return isinstance(exc, torch.cuda.OutOfMemoryError) or oom.is_oom(exc)


def unsupported_reason(cell: Cell) -> str | None:
    """Why this backend cannot run `cell` on any device, or None."""
    # The registry's spec is the one list of what this backend implements; the runner skips such
    # cells before spawning, and this guards in-process callers (tests, benchmarks) the same way.
    reason = TORCH.unsupported_reason_for(cell)
    if reason:
        return reason
    if (cell.techniques.get("pruning") or {}).get("sparse_kernels"):
        # PyTorch's to_sparse_semi_structured serves inference; training through semi-structured
        # kernels needs torchao's sparse training, which hlbench does not wire up yet.
        return (
            "2:4 with sparse_kernels: semi-structured sparse training kernels are not "
            "implemented in hlbench yet; use sparse_kernels: false (masks on dense kernels)"
        )
    return None
