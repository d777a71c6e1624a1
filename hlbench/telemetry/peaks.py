"""Peak FLOP/s for MFU: a table of dense peaks per NVIDIA GPU model and precision, and on a CPU a
short GEMM calibration with the cell's own framework and dtype.

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


def numpy_gemm_best_time_s(n: int, reps: int = GEMM_REPS) -> float:
    """The best time of `reps` float32 n×n matrix products in NumPy, after one untimed product."""
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    a @ b
    best_s = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        best_s = min(best_s, time.perf_counter() - t0)
    return best_s


def cpu_gemm_flops(framework: str, precision: str, n: int = GEMM_N) -> tuple[float | None, str]:
    """The best of a few n×n GEMMs in `framework` ("torch", "tensorflow" or "numpy") and the
    precision's dtype on the CPU, as FLOP/s — the attainable peak MFU divides by on a CPU."""
    dtype = GEMM_DTYPE.get(precision)
    if dtype is None:
        return None, f"no CPU GEMM for precision {precision}"
    if framework == "numpy":
        if dtype != "float32":
            return None, "NumPy has no bf16/fp16 GEMM worth calibrating"
        best_s, threads = numpy_gemm_best_time_s(n), "BLAS default"
    elif framework in GEMM_TIMERS:
        timer = importlib.import_module(GEMM_TIMERS[framework])
        best_s, threads = timer.gemm_best_time_s(dtype, n, GEMM_REPS)
    else:
        return None, f"no CPU GEMM calibration for framework {framework!r}"
    flops = 2.0 * n**3
    source = (
        f"calibration: {framework} {dtype} GEMM {n}³ on the CPU ({threads} threads), "
        f"best of {GEMM_REPS}"
    )
    return flops / best_s, source


def mfu(
    tokens_per_s: float | None, flops_per_token: float | None, peak_flops: float | None
) -> float | None:
    if not tokens_per_s or not flops_per_token or not peak_flops:
        return None
    return tokens_per_s * flops_per_token / peak_flops
