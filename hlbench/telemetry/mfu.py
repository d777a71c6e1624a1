"""MFU for a finished cell, in the worker (which has the cell's framework loaded for a CPU
calibration).

On a GPU the peak comes from the table in hlbench.telemetry.peaks, looked up by the device name the
framework reported; on a CPU from a GEMM calibration with the cell's framework and precision, done
once per run and cached in the file named by HLBENCH_CALIBRATION_CACHE (the runner sets it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hlbench.handoff import CALIBRATION_CACHE_ENV
from hlbench.telemetry.peaks import cpu_gemm_flops, gpu_peak, mfu


def _gpu_index(device: str) -> int | None:
    """'cuda', 'cuda:1', '/GPU:0' → the framework's device index; None for a CPU."""
    lowered = device.lower()
    if "cuda" not in lowered and "gpu" not in lowered:
        return None
    tail = lowered.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _cached_cpu_peak(framework: str, precision: str) -> tuple[float | None, str]:
    path = (
        Path(os.environ[CALIBRATION_CACHE_ENV]) if os.environ.get(CALIBRATION_CACHE_ENV) else None
    )
    key = f"{framework}/{precision}"
    cache: dict[str, Any] = {}
    if path and path.is_file():
        try:
            cache = json.loads(path.read_text())
        except (OSError, ValueError):
            cache = {}
    if key in cache:
        return cache[key]["flops"], cache[key]["source"] + " (cached for this run)"
    flops, source = cpu_gemm_flops(framework, precision)
    if path and flops:
        cache[key] = {"flops": flops, "source": source}
        tmp = path.with_name(
            f"{path.name}.{os.getpid()}.tmp"
        )  # workers running side by side (--devices)
        tmp.write_text(json.dumps(cache, indent=1))
        os.replace(tmp, path)
    return flops, source


def mfu_metrics(
    framework: str,
    precision: str,
    device: str,
    gpus: list[dict[str, Any]],
    tokens_per_s: float | None,
    flops_per_token: float | None,
) -> dict[str, Any]:
    index = _gpu_index(device)
    if index is None:
        peak, source = _cached_cpu_peak(framework, precision)
    else:
        name = next((g.get("name") for g in gpus if g.get("index") == index), None)
        peak, source = gpu_peak(name, precision)
    value = mfu(tokens_per_s, flops_per_token, peak)
    return {
        "mfu": value,  # tokens/s × flops_per_token / mfu_peak_flops
        "mfu_peak_flops": peak,
        "mfu_peak_source": source if peak else None,
        "mfu_reason": None
        if value is not None
        else (source if not peak else "no throughput or FLOPs figure"),
    }
