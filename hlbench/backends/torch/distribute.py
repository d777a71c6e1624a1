"""Data parallel for the PyTorch trainer (a cell with `launch`, started by torchrun;
hlbench.sweep.launch).

`join_process_group` joins the process group (NCCL on GPUs, gloo on CPUs; its timeout is the cell's
timeout_s), each rank uses cuda:LOCAL_RANK or the CPU, and the model is wrapped after its weights
are loaded and cast:
- ddp: torch.nn.parallel.DistributedDataParallel; the first k-1 micro-batches run under no_sync(),
  so gradients are all-reduced once per optimizer step, as accumulation means;
- fsdp: FSDP2 (torch.distributed.fsdp.fully_shard) on each GPT block, then on the whole model;
  parameters, gradients and AdamW state are sharded DTensors; gradient sync only on the last
  micro-batch (set_requires_gradient_sync).
Both wrappers *average* gradients over the ranks; the trainer scales each rank's loss to make the
step's gradient their sum (hlbench.backends.torch.trainer).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from hlbench.backends.torch.device import resolve_device
from hlbench.cell import Cell

WRAPPER_NAMES = {"ddp": "DistributedDataParallel", "fsdp": "FSDP2 fully_shard"}


def join_process_group(cell: Cell) -> None:
    """Join torchrun's process group (its env:// rendezvous) once per process, for a cell with
    `launch`."""
    if not cell.launch or dist.is_initialized():
        return
    device = resolve_device(cell.device, data_parallel=True)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(
        "nccl" if device.type == "cuda" else "gloo",
        timeout=timedelta(seconds=cell.measurement.timeout_s),
    )


def leave_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def rank_and_world_size() -> tuple[int, int]:
    return dist.get_rank(), dist.get_world_size()


def wrap(model: nn.Module, strategy: str | None, device: torch.device) -> nn.Module:
    """The data-parallel wrapper of the cell's strategy; the model itself without one."""
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids)
    if strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        # GPT blocks: one all-gather / reduce-scatter unit each
        for block in getattr(model, "h", []):
            fully_shard(block)
        fully_shard(model)  # the rest (embeddings, tied head, final LayerNorm; the whole LSTM)
    return model


def gradient_sync(
    strategy: str | None, model: nn.Module, wrapped: nn.Module, on: bool
) -> AbstractContextManager[Any]:
    """Gradients are synchronised across ranks only on the step's last micro-batch (`on`)."""
    if strategy == "ddp" and not on:
        return wrapped.no_sync()
    if strategy == "fsdp":
        model.set_requires_gradient_sync(on)
    return nullcontext()


def full_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """The whole tensor: an FSDP-sharded DTensor gathered from every rank (a collective), else
    itself."""
    return tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor


def shard_like(param: torch.Tensor, full: torch.Tensor) -> torch.Tensor:
    """`full` laid out like `param`: sharded the same way when param is an FSDP DTensor."""
    if not hasattr(param, "device_mesh"):
        return full
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(full, param.device_mesh, param.placements)


def sum_over_ranks(tensor: torch.Tensor) -> None:
    """`tensor` replaced, on every rank, by its sum over the ranks (a collective)."""
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)


def all_gather_objects(obj: Any, world_size: int) -> list[Any]:
    """`obj` from every rank, in rank order (a collective)."""
    out: list[Any] = [None] * world_size
    dist.all_gather_object(out, obj)
    return out


def strategy_text(strategy: str, world_size: int) -> str:
    return f"{WRAPPER_NAMES[strategy]} over {world_size} ranks ({dist.get_backend()})"
