"""Peak FLOP/s for MFU: a table of dense peaks per NVIDIA GPU model and precision, and the GEMM
timers a CPU calibration uses (hlbench.telemetry.calibration: one peak per machine, cached).

MFU = tokens/s × FLOPs per token ÷ peak FLOP/s. FLOPs per token = 6·N + 12·L·d·T for `gpt` (N =
every parameter taking part in a matmul: all but the position embedding, the tied wte counted once
as the output head; L layers, width d, sequence length T; causal masking not discounted) and 6·N for
`lstm` (N without the embedding) — see hlbench.workloads. Unknown device or precision → MFU is null
with the reason; there is no default device.

Table: NVIDIA datasheet figures, dense (without 2:4 sparsity), at boost clock, in TFLOP/s. "fp32" is
the CUDA-core FP32 rate (TF32 off); "tf32", "bf16", "fp16", "fp8" the tensor-core rates (fp32
accumulate).
"""

from __future__ import annotations

import importlib
import re
import time
from typing import Any

import numpy as np

TFLOPS = 1e12

# (regex on the device name as NVML/CUDA report it, {precision: dense TFLOP/s}); first match wins,
# so specific variants come before their family.
GPU_PEAKS_TFLOPS: list[tuple[str, dict[str, float]]] = [
    (r"H200 NVL", {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5, "fp16": 835.5, "fp8": 1670.5}),
    (r"H200", {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4, "fp8": 1978.9}),
    (r"H100 PCIe", {"fp32": 51.2, "tf32": 378.0, "bf16": 756.0, "fp16": 756.0, "fp8": 1513.0}),
    (r"H100 NVL", {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5, "fp16": 835.5, "fp8": 1670.5}),
    (r"H100", {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4, "fp8": 1978.9}),  # SXM
    (r"A100", {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0}),
    (r"L40S", {"fp32": 91.6, "tf32": 183.0, "bf16": 362.05, "fp16": 362.05, "fp8": 733.0}),
    (r"\bL4\b", {"fp32": 30.3, "tf32": 60.0, "bf16": 121.0, "fp16": 121.0, "fp8": 242.5}),
    (r"\bA10G\b", {"fp32": 31.2, "tf32": 62.5, "bf16": 125.0, "fp16": 125.0}),
    (r"\bA10\b", {"fp32": 31.2, "tf32": 62.5, "bf16": 125.0, "fp16": 125.0}),
    (r"\bT4\b", {"fp32": 8.1, "fp16": 65.0}),  # Turing: no bf16, no tf32
    (r"V100.*PCIE|V100-PCIE", {"fp32": 14.0, "fp16": 112.0}),
    (r"V100", {"fp32": 15.7, "fp16": 125.0}),  # SXM2
    (r"RTX 4090", {"fp32": 82.6, "tf32": 82.6, "bf16": 165.2, "fp16": 165.2, "fp8": 330.3}),
    (r"RTX 3090", {"fp32": 35.6, "tf32": 35.6, "bf16": 71.0, "fp16": 71.0}),
]

# Which table column a precision level's matmuls run at.
PEAK_COLUMN = {
    "fp32": "fp32",
    "tf32": "tf32",
    "bf16": "bf16",
    "bf16-pure": "bf16",
    "fp16": "fp16",
    "fp8": "fp8",
}
GEMM_DTYPE = {
    "fp32": "float32",
    "tf32": "float32",
    "bf16": "bfloat16",
    "bf16-pure": "bfloat16",
    "fp16": "float16",
}
GEMM_N = 1024  # 2·n³ ≈ 2.1 GFLOP per product: tens of ms at CPU speeds
GEMM_REPS = 5  # timed products; the best one counts

# The framework-specific GEMM timers, imported only when a cell of that framework calibrates (this
# module imports no framework). Each module's gemm_best_time_s(dtype, n, reps) returns the best time
# in seconds and a description of the threads it ran with.
GEMM_TIMERS = {
    "torch": "hlbench.backends.torch.calibrate",
    "tensorflow": "hlbench.backends.tf.calibrate",
}


def gpu_peak(name: str | None, precision: str) -> tuple[float | None, str]:
    """(peak FLOP/s, source) from the table; (None, reason) when the model or precision is
    unknown."""
    if not name:
        return None, "the GPU's name is unknown"
    column = PEAK_COLUMN.get(precision)
    for pattern, peaks in GPU_PEAKS_TFLOPS:
        if re.search(pattern, name, flags=re.IGNORECASE):
            if column not in peaks:
                return None, f"{name} has no {precision} tensor-core rate in the table"
            return peaks[column] * TFLOPS, f"table: {name} {column} dense {peaks[column]:g} TFLOP/s"
    return None, f"{name} is not in hlbench's GPU peak table (hlbench.telemetry.peaks)"


def gpu_best_peak(name: str | None) -> tuple[float | None, str]:
    """The GPU's best dense peak over every precision in the table (what MFU divides by, so that
    precisions compare), and its source."""
    if not name:
        return None, "the GPU's name is unknown"
    for pattern, peaks in GPU_PEAKS_TFLOPS:
        if re.search(pattern, name, flags=re.IGNORECASE):
            column = max(peaks, key=peaks.__getitem__)
            return peaks[column] * TFLOPS, f"table: {name} {column} dense {peaks[column]:g} TFLOP/s"
    return None, f"{name} is not in hlbench's GPU peak table (hlbench.telemetry.peaks)"


def numpy_gemm_best_time_s(
    dtype: str, shape: tuple[int, int, int], reps: int = GEMM_REPS
) -> tuple[float, str]:
    """The best time of `reps` (m, k) × (k, n) products in NumPy, after one untimed product."""
    m, k, n = shape
    a = np.random.default_rng(0).standard_normal((m, k), dtype=np.float32).astype(dtype)
    b = np.random.default_rng(1).standard_normal((k, n), dtype=np.float32).astype(dtype)
    a @ b
    best_s = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        best_s = min(best_s, time.perf_counter() - t0)
    return best_s, "BLAS default"


def cpu_timer(framework: str) -> tuple[Any, str, str] | None:
    """(GEMM timer, framework version, threads) for a CPU calibration in `framework`, or None.
    NumPy times float32 only (its float16 products are not BLAS; it has no bfloat16)."""
    if framework == "numpy":

        def numpy_timer(dtype: str, shape: tuple[int, int, int], reps: int) -> tuple[float, str]:
            if dtype != "float32":
                return float("inf"), "BLAS default"  # not calibrated: a rate of 0
            return numpy_gemm_best_time_s(dtype, shape, reps)

        return numpy_timer, f"numpy {np.__version__}", "BLAS default"
    if framework not in GEMM_TIMERS:
        return None
    module = importlib.import_module(GEMM_TIMERS[framework])
    return module.gemm_best_time_s, module.framework_version(), module.threads()


def cpu_gemm_flops(framework: str, precision: str, n: int = GEMM_N) -> tuple[float | None, str]:
    """One n×n GEMM rate in `framework` and the precision's dtype (`hlbench env`'s figure; MFU
    uses the cached per-machine peak of hlbench.telemetry.calibration)."""
    dtype = GEMM_DTYPE.get(precision)
    timer = cpu_timer(framework)
    if dtype is None or timer is None:
        return None, f"no CPU GEMM for {framework} {precision}"
    best_s, threads = timer[0](dtype, (n, n, n), GEMM_REPS)
    if best_s == float("inf"):
        return None, f"no {framework} {dtype} GEMM worth calibrating"
    source = f"calibration: {framework} {dtype} GEMM {n}³ on the CPU ({threads} threads)"
    return 2.0 * n**3 / best_s, source + f", best of {GEMM_REPS}"


def mfu(
    tokens_per_s: float | None, flops_per_token: float | None, peak_flops: float | None
) -> float | None:
    if not tokens_per_s or not flops_per_token or not peak_flops:
        return None
    return tokens_per_s * flops_per_token / peak_flops
