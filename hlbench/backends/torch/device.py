"""Which device a PyTorch cell trains on, and the device facts its record carries (GPUs, driver,
CUDA and cuDNN versions)."""

from __future__ import annotations

import os
from typing import Any

import torch

from hlbench.errors import SkipCell


def resolve_device(requested: str, data_parallel: bool = False) -> torch.device:
    """auto → the first CUDA device when there is one, else the CPU; an absent device skips the
    cell. Data parallel: each rank's own GPU, cuda:LOCAL_RANK (the suite rejects cuda:N with a
    launcher)."""
    if data_parallel and requested in ("auto", "cuda"):
        if not torch.cuda.is_available():
            if requested == "cuda":
                raise SkipCell("device 'cuda' requested but PyTorch sees no CUDA device")
            return torch.device("cpu")
        requested = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SkipCell(f"device {requested!r} requested but PyTorch sees no CUDA device")
        count = torch.cuda.device_count()
        if (device.index or 0) >= count:
            raise SkipCell(f"device {requested!r} requested but only {count} CUDA device(s)")
    return device


def framework_environment() -> dict[str, Any]:
    """PyTorch's version, its CUDA and cuDNN builds, and every CUDA device it sees."""
    cudnn = torch.backends.cudnn
    env: dict[str, Any] = {
        "framework": "torch",
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda,
        "cudnn_version": cudnn.version() if cudnn.is_available() else None,
        "gpus": [],
    }
    if torch.cuda.is_available():
        env["gpus"] = [_gpu_facts(i) for i in range(torch.cuda.device_count())]
        env["driver_version"] = nvidia_driver_version()
    return env


def _gpu_facts(index: int) -> dict[str, Any]:
    return {
        "index": index,
        "name": torch.cuda.get_device_name(index),
        "capability": ".".join(map(str, torch.cuda.get_device_capability(index))),
        "memory_total_bytes": torch.cuda.get_device_properties(index).total_memory,
    }


def nvidia_driver_version() -> str | None:
    """The driver version via NVML when nvidia-ml-py is installed (telemetry brings more)."""
    try:
        import pynvml  # nvidia-ml-py; optional
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        try:
            version = pynvml.nvmlSystemGetDriverVersion()
        finally:
            pynvml.nvmlShutdown()
    except pynvml.NVMLError:
        return None
    return version.decode() if isinstance(version, bytes) else version
