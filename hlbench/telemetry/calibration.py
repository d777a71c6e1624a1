"""One CPU peak per machine for MFU: the best GEMM rate measured on this machine, cached per
machine and framework version in a user-level cache, so runs do not spend time on it and cells of
different runs divide by the same figure.

Calibration: each dtype (float32, bfloat16, float16) of the cell's framework over several GEMM
shapes — squares (1024³, 2048³) and the workload's own matmuls ((rows, in) × (in, out) for each of
its kernels, rows = micro batch × sequence length) — best of a few timed products each. Rows are
cut so that one product takes about TARGET_S at the dtype's rate (bf16 and fp16 run at ~1 GFLOP/s
on CPUs without their instructions), so a first calibration takes seconds, not minutes.

The cache keeps, per machine, framework version and thread count, each dtype's best rate and the
shapes already tried, so a new workload only times its new shapes and a peak can only rise. A new
framework version (or another machine, or thread count) is another key: it calibrates afresh.

The cache: $HLBENCH_CACHE_DIR, else $XDG_CACHE_HOME/hlbench, else ~/.cache/hlbench; the file
`cpu-peaks.json`, replaced atomically (workers side by side may write it; the last one wins, and
nothing measured is lost that a later calibration would not measure again).
"""

from __future__ import annotations

import json
import os
import platform
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CACHE_DIR_ENV = "HLBENCH_CACHE_DIR"
CACHE_FILE = "cpu-peaks.json"
DTYPES = ("float32", "bfloat16", "float16")
SQUARES = [(1024, 1024, 1024), (2048, 2048, 2048)]
MAX_GEMM_FLOPS = 4e9  # a workload shape's rows are trimmed to keep one product below this
REPS = 3  # timed products per shape and dtype; the best counts
TARGET_S = 0.05  # about how long one timed product may take (rows are cut to fit)
PROBE = 256  # a first square, to estimate a dtype's rate before the real shapes
# timer(dtype, (m, k, n), reps) -> (best seconds, threads); version() -> the framework's version
Timer = Callable[[str, tuple[int, int, int], int], tuple[float, str]]


def cache_dir() -> Path:
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hlbench"


def machine_key() -> str:
    """Which machine: host name, CPU model, logical cores and the cores this process may use."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{socket.gethostname()} | {model} | {os.cpu_count()} cores | {usable} usable"


def workload_shapes(param_shapes: dict[str, tuple[int, ...]], rows: int) -> list[list[int]]:
    """(m, k, n) of the workload's matmuls: (rows, in) × (in, out) for every 2-D kernel in the
    neutral (in, out) layout; an embedding (V, d) is the tied head's (rows, d) × (d, V). Rows are
    trimmed so one product stays below MAX_GEMM_FLOPS."""
    shapes = []
    for name, shape in param_shapes.items():
        if len(shape) != 2 or name in ("wpe",):  # position embeddings are no matmul
            continue
        k, n = (shape[1], shape[0]) if name in ("wte", "embed") else shape
        m = max(1, min(rows, int(MAX_GEMM_FLOPS / (2 * k * n))))
        if [m, k, n] not in shapes:
            shapes.append([m, k, n])
    return shapes


@dataclass(frozen=True)
class Peak:
    flops: float
    source: str


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


def _time_shape(timer: Timer, dtype: str, shape: list[int], rate: float) -> tuple[float, list[int]]:
    """The best rate of (m, k, n) products, m cut so one product takes about TARGET_S at `rate`
    (a dtype without fast kernels runs at a GFLOP/s or so on some CPUs: its full squares would
    take minutes) and grown ×4 while a product is faster than that."""
    m_full, k, n = shape
    m = max(1, min(m_full, int(TARGET_S * rate / (2 * k * n))))
    while True:
        seconds, _ = timer(dtype, (m, k, n), REPS)
        if m == m_full or seconds >= TARGET_S / 2:
            return 2.0 * m * k * n / seconds, [m, k, n]
        m = min(m_full, m * 4)


def _calibrate(entry: dict[str, Any], shapes: list[list[int]], timer: Timer) -> bool:
    """Time every dtype on the shapes its entry has not tried; True if anything was measured."""
    measured = False
    for dtype in DTYPES:
        best = entry.setdefault(dtype, {"flops": 0.0, "shape": None, "tried": []})
        todo = [s for s in shapes if s not in best["tried"]]
        if not todo:
            continue
        rate = best["flops"] or 2.0 * PROBE**3 / timer(dtype, (PROBE, PROBE, PROBE), 1)[0]
        for shape in todo:
            flops, timed = _time_shape(timer, dtype, shape, rate)
            best["tried"].append(shape)
            if flops > best["flops"]:
                best["flops"], best["shape"] = flops, timed
            rate = max(rate, flops)
        entry["threads"], measured = timer(dtype, (1, 1, 1), 1)[1], True
    return measured


def cpu_peaks(
    framework: str, version: str, threads: str, timer: Timer, shapes: list[list[int]]
) -> tuple[Peak | None, dict[str, Peak]]:
    """(the machine's best peak over every dtype and framework cached for it, {dtype: this
    framework's peak for it}), calibrating what the cache lacks for this framework version."""
    path = cache_dir() / CACHE_FILE
    cache = _read(path)
    machine = cache.setdefault(machine_key(), {})
    key = f"{version} threads={threads}"  # the version names its framework: "torch 2.13.0"
    entry = machine.setdefault(key, {})
    if _calibrate(entry, [list(s) for s in SQUARES] + shapes, timer):
        _write(path, cache)
    own = {d: _peak(key, d, entry[d]) for d in DTYPES if entry[d]["flops"] > 0}
    candidates = [
        _peak(k, d, e[d])
        for k, e in machine.items()
        for d in DTYPES
        if isinstance(e.get(d), dict) and e[d].get("flops", 0) > 0
    ]
    return max(candidates, key=lambda p: p.flops, default=None), own


def _peak(key: str, dtype: str, best: dict[str, Any]) -> Peak:
    m, k, n = best["shape"]
    return Peak(
        best["flops"],
        f"calibration: {key} {dtype} GEMM {m}×{k}×{n} on the CPU, best of "
        f"{len(best['tried'])} shapes × {REPS} (cached per machine)",
    )
