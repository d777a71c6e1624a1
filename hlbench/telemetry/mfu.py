"""MFU for a finished cell, in the worker (which has the cell's framework loaded for a CPU
calibration).

Two figures, each tokens/s × FLOPs per token ÷ a peak:
- `mfu`: against the device's best dense peak over all precisions — on a GPU the table's best
  column (hlbench.telemetry.peaks), on a CPU the best GEMM rate calibrated on this machine in any
  framework and dtype (hlbench.telemetry.calibration, cached per machine) — so cells of different
  precisions compare;
- `mfu_dtype`: against the peak of the cell's own precision (GPU: its table column; CPU: this
  framework's calibrated rate in the precision's dtype).

A figure above 1 is impossible by definition: it is not reported (null) and `mfu_flag` says it is a
calibration problem, with the value it would have had.
"""

from __future__ import annotations

from typing import Any

from hlbench.telemetry.calibration import cpu_peaks
from hlbench.telemetry.peaks import GEMM_DTYPE, cpu_timer, gpu_best_peak, gpu_peak

Peaks = tuple[float | None, str, float | None, str]  # best, its source, the dtype's, its source


def _gpu_index(device: str) -> int | None:
    """'cuda', 'cuda:1', '/GPU:0' → the framework's device index; None for a CPU."""
    lowered = device.lower()
    if "cuda" not in lowered and "gpu" not in lowered:
        return None
    tail = lowered.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _cpu(framework: str, precision: str, shapes: list[list[int]]) -> Peaks:
    timer = cpu_timer(framework)
    if timer is None:
        reason = f"no CPU GEMM calibration for framework {framework!r}"
        return None, reason, None, reason
    best, own = cpu_peaks(framework, timer[1], timer[2], timer[0], shapes)
    dtype = GEMM_DTYPE.get(precision)
    mine = own.get(dtype) if dtype else None
    no_dtype = f"no {framework} {dtype or precision} GEMM calibrated on the CPU"
    return (
        best.flops if best else None,
        best.source if best else "no CPU GEMM calibrated",
        mine.flops if mine else None,
        mine.source if mine else no_dtype,
    )


def _gpu(index: int, precision: str, gpus: list[dict[str, Any]]) -> Peaks:
    name = next((g.get("name") for g in gpus if g.get("index") == index), None)
    return (*gpu_best_peak(name), *gpu_peak(name, precision))


def _figure(achieved: float | None, peak: float | None, source: str) -> tuple[float | None, str]:
    """(MFU, why it is null) of one peak."""
    if not peak:
        return None, source
    if not achieved:
        return None, "no throughput or FLOPs figure"
    return achieved / peak, ""


def mfu_metrics(
    framework: str,
    precision: str,
    device: str,
    gpus: list[dict[str, Any]],
    tokens_per_s: float | None,
    flops_per_token: float | None,
    shapes: list[list[int]] | None = None,
) -> dict[str, Any]:
    """The record's MFU fields. `shapes`: the workload's GEMMs ((m, k, n), calibration.
    workload_shapes), timed with the squares on a CPU the first time this machine sees them."""
    index = _gpu_index(device)
    if index is None:
        best, best_source, own, own_source = _cpu(framework, precision, shapes or [])
    else:
        best, best_source, own, own_source = _gpu(index, precision, gpus)
    achieved = tokens_per_s * flops_per_token if tokens_per_s and flops_per_token else None
    mfu, reason = _figure(achieved, best, best_source)
    mfu_dtype, dtype_reason = _figure(achieved, own, own_source)
    flags = []
    if mfu is not None and mfu > 1:
        flags.append(f"MFU would be {mfu:.0%} of the best peak")
        mfu, reason = None, "calibration problem: above 100%"
    if mfu_dtype is not None and mfu_dtype > 1:
        flags.append(f"MFU would be {mfu_dtype:.0%} of the {precision} peak")
        mfu_dtype, dtype_reason = None, "calibration problem: above 100%"
    return {
        "mfu": mfu,  # tokens/s × flops_per_token / mfu_peak_flops
        "mfu_peak_flops": best,
        "mfu_peak_source": best_source if best else None,
        "mfu_reason": reason or None,
        "mfu_dtype": mfu_dtype,  # the same against the cell's own precision's peak
        "mfu_dtype_peak_flops": own,
        "mfu_dtype_peak_source": own_source if own else None,
        "mfu_dtype_reason": dtype_reason or None,
        # an MFU above 100% is impossible: the peak it was divided by is wrong (not reported)
        "mfu_flag": "calibration problem: " + "; ".join(flags) if flags else None,
    }
