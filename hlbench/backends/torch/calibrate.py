"""A CPU GEMM timed in PyTorch, for the peak FLOP/s MFU divides by on a CPU
(hlbench.telemetry.peaks.cpu_gemm_flops calls it)."""

from __future__ import annotations

import time

import torch


def gemm_best_time_s(dtype: str, n: int, reps: int = 5) -> tuple[float, str]:
    """The best time of `reps` n×n matrix products in `dtype` ("float32", "bfloat16", "float16") on
    the CPU, after one untimed product (allocation, kernel selection); and the intra-op thread count
    they ran with."""
    a = torch.randn(n, n).to(getattr(torch, dtype))
    b = torch.randn(n, n).to(getattr(torch, dtype))
    torch.mm(a, b)
    best_s = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.mm(a, b)  # synchronous on the CPU
        best_s = min(best_s, time.perf_counter() - t0)
    return best_s, str(torch.get_num_threads())
