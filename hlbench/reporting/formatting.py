"""Fixed-format text for numbers, so that the same records always give the same bytes of
markdown."""

from __future__ import annotations

import math
from typing import Any

from hlbench.records.memory import SOURCES_BY_NAME

MISSING = "—"

BACKEND_NAMES = {"torch": "PyTorch", "tf": "TensorFlow", "tensorflow": "TensorFlow"}


def missing(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def backend_name(name: str) -> str:
    return BACKEND_NAMES.get(name, name)


def memory_source(source: Any) -> str:
    """A short label for the memory figure a number comes from (hlbench.records.memory)."""
    if missing(source):
        return MISSING
    known = SOURCES_BY_NAME.get(source)
    return known.label if known else str(source)


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
