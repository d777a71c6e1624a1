"""Fixed-format text for numbers, so that the same records always give the same bytes of markdown."""

from __future__ import annotations

import math
from typing import Any

MISSING = "—"

BACKEND_NAMES = {"torch": "PyTorch", "tf": "TensorFlow", "tensorflow": "TensorFlow"}

# Short labels for the memory figure a number comes from (hlbench.results.PEAK_MEMORY_SOURCES).
MEMORY_SOURCE_LABELS = {
    "torch_cuda_max_allocated_bytes": "torch allocator",
    "torch_cuda_max_reserved_bytes": "torch reserved",
    "tf_peak_bytes": "TF allocator",
    "tf_peak_bytes_in_use": "TF allocator",
    "nvml_process_peak_bytes": "NVML process",
    "nvml_device_peak_used_bytes": "NVML device",
    "host_peak_rss_bytes": "host RSS",
}


def missing(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def backend_name(name: str) -> str:
    return BACKEND_NAMES.get(name, name)


def memory_source(source: Any) -> str:
    return MISSING if missing(source) else MEMORY_SOURCE_LABELS.get(source, str(source))


def num(x: Any, digits: int = 3) -> str:
    """Three significant digits below 1000, thousands separators above (tokens/s, counts)."""
    if missing(x):
        return MISSING
    x = float(x)
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if x == 0:
        return "0"
    decimals = max(0, digits - 1 - int(math.floor(math.log10(abs(x)))))
    return f"{x:.{decimals}f}"


def mib(x: Any) -> str:
    return MISSING if missing(x) else f"{float(x) / 2**20:,.1f} MiB"


def ms(x: Any) -> str:
    return MISSING if missing(x) else f"{float(x) * 1e3:.2f}"


def ratio(x: Any) -> str:
    return MISSING if missing(x) else f"{float(x):.2f}×"


def percent(x: Any, signed: bool = False) -> str:
    if missing(x):
        return MISSING
    return f"{float(x) * 100:+.1f}%" if signed else f"{float(x) * 100:.1f}%"


def nats(x: Any, signed: bool = False) -> str:
    if missing(x):
        return MISSING
    return f"{float(x):+.3f}" if signed else f"{float(x):.3f}"


def joules(x: Any) -> str:
    return MISSING if missing(x) else f"{float(x) * 1e3:.3g} mJ"


def interval(lo: Any, hi: Any, fmt: Any) -> str:
    return "" if missing(lo) or missing(hi) else f" [{fmt(lo)}, {fmt(hi)}]"
