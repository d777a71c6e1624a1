"""A CPU GEMM timed in PyTorch, for the peak FLOP/s MFU divides by on a CPU
(hlbench.telemetry.calibration calls it through hlbench.telemetry.peaks)."""

from __future__ import annotations

import time

import torch


def framework_version() -> str:
    return f"torch {torch.__version__}"


def threads() -> str:
    return str(torch.get_num_threads())


def gemm_best_time_s(dtype: str, shape: tuple[int, int, int], reps: int = 3) -> tuple[float, str]:
    """The best time of `reps` (m, k) × (k, n) matrix products in `dtype` ("float32", "bfloat16",
    "float16") on the CPU, after one untimed product (allocation, kernel selection); and the
    intra-op thread count they ran with."""
    m, k, n = shape
    a = torch.randn(m, k).to(getattr(torch, dtype))
    b = torch.randn(k, n).to(getattr(torch, dtype))
    torch.mm(a, b)
    best_s = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.mm(a, b)  # synchronous on the CPU
        best_s = min(best_s, time.perf_counter() - t0)
    return best_s, threads()
