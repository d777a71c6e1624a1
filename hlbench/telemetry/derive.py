"""Derived figures from raw samples, aligned to the worker's measured windows.

Every figure is over the samples whose time falls inside a measured window (warmup, compile and eval
excluded), except `host_rss_peak_worker_bytes`, which covers the worker's whole life. Energy is the
increase of a cumulative counter (NVML's total energy; RAPL's package energy) between the window's
start and end, each interpolated linearly between the samples around it; windows shorter than
MIN_ENERGY_WINDOW_S are too short for the counters' update period and make the energy null with that
reason, rather than a zero or a spike.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from hlbench.telemetry.nvml import THROTTLE_BITS, THROTTLE_MASK

# NVML's energy counter and RAPL update every few to ~100 ms; a window must span many updates.
MIN_ENERGY_WINDOW_S = 1.0

Row = dict[str, Any]
Window = Sequence[float]  # [start, end] on time.monotonic()


def _inside(rows: list[Row], windows: Sequence[Window]) -> list[Row]:
    return [r for r in rows if any(s <= r["t_monotonic_s"] <= e for s, e in windows)]


def _values(rows: list[Row], key: str) -> list[float]:
    return [r[key] for r in rows if r.get(key) is not None]


def _max(rows: list[Row], key: str) -> float | None:
    values = _values(rows, key)
    return max(values) if values else None


def _mean(rows: list[Row], key: str) -> float | None:
    values = _values(rows, key)
    return statistics.fmean(values) if values else None


def _interpolate(points: list[tuple[float, float]], t: float) -> float | None:
    """A cumulative counter's value at time t, from the samples just before and just after it."""
    before = [p for p in points if p[0] <= t]
    after = [p for p in points if p[0] >= t]
    if not before or not after:
        return None
    (t0, v0), (t1, v1) = before[-1], after[0]
    return v0 if t1 == t0 else v0 + (v1 - v0) * (t - t0) / (t1 - t0)


def counter_delta(
    rows: list[Row], key: str, windows: Sequence[Window]
) -> tuple[float | None, str | None]:
    """Sum over windows of the counter's increase, or None and why."""
    points = [(r["t_monotonic_s"], r[key]) for r in rows if r.get(key) is not None]
    if not points:
        return None, "no counter samples"
    total = 0.0
    for start, end in windows:
        if end - start < MIN_ENERGY_WINDOW_S:
            return None, (
                f"a measured window lasted {end - start:.3g} s, shorter than the "
                f"{MIN_ENERGY_WINDOW_S:g} s "
                "an energy counter needs to resolve it (raise measurement.steps)"
            )
        a, b = _interpolate(points, start), _interpolate(points, end)
        if a is None or b is None:
            return None, "no sample before the start or after the end of a measured window"
        if b <= a:
            return None, "the energy counter did not advance during a measured window"
        total += b - a
    return total, None


def _per_device(rows: list[Row]) -> dict[Any, list[Row]]:
    groups: dict[Any, list[Row]] = {}
    for r in rows:
        groups.setdefault(r.get("gpu_index"), []).append(r)
    return groups


def _energy(
    rows: list[Row], key: str, windows: Sequence[Window], tokens: float | None, sum_devices: bool
) -> dict[str, Any]:
    """A counter's increase over the windows: summed over GPUs (sum_devices), or once for host
    fields,
    which repeat on every device's row of a tick."""
    groups = list(_per_device(rows).values())
    if not sum_devices:
        groups = groups[:1]
    total: float | None = 0.0
    reason = None
    for group in groups:
        delta, why = counter_delta(group, key, windows)
        if delta is None:
            total, reason = None, why
            break
        total += delta
    per_token = total / tokens if total is not None and tokens else None
    return {"j": total, "per_token_j": per_token, "reason": reason}


def _throttle(rows: list[Row]) -> tuple[float | None, list[str]]:
    reasons = [
        r["gpu_clock_event_reasons"] for r in rows if r.get("gpu_clock_event_reasons") is not None
    ]
    if not reasons:
        return None, []
    throttled = [bits & THROTTLE_MASK for bits in reasons]
    seen = sorted(name for name, bit in THROTTLE_BITS.items() if any(b & bit for b in throttled))
    return sum(1 for b in throttled if b) / len(throttled), seen


def _one_per_tick(rows: list[Row]) -> list[Row]:
    """One row per sampling tick: host fields repeat on every device's row of a tick."""
    return list({r["t_monotonic_s"]: r for r in rows}.values())


def summarize(
    rows: list[Row], windows: Sequence[Window], tokens_in_windows: float | None
) -> dict[str, Any]:
    """The derived telemetry of one cell run. `tokens_in_windows`: tokens trained in the measured
    windows."""
    inside = _inside(rows, windows)
    host_inside = _one_per_tick(inside)  # host fields once per tick, not once per device
    host_energy = _energy(rows, "host_rapl_energy_j", windows, tokens_in_windows, False)
    derived: dict[str, Any] = {
        "n_samples": len(_one_per_tick(rows)),
        "n_samples_in_windows": len(host_inside),
        # the worker process's resident set (children excluded), peak inside the windows and over
        # its whole life
        "host_rss_peak_bytes": _max(host_inside, "host_rss_bytes"),
        "host_rss_peak_worker_bytes": _max(rows, "host_rss_bytes"),
        "host_cpu_util_mean_pct": _mean(host_inside, "host_cpu_pct"),  # % of one core
        "host_rapl_energy_j": host_energy["j"],
        "host_rapl_energy_per_token_j": host_energy["per_token_j"],
    }
    reasons = {}
    if not host_inside:
        reasons["windows"] = (
            "no sample fell inside a measured window (windows shorter than the sampling interval?)"
        )
    if any(r.get("gpu_index") is not None for r in rows):
        gpu_energy = _energy(rows, "gpu_energy_j", windows, tokens_in_windows, True)
        derived.update(_gpu_figures(rows, inside, gpu_energy))
        if gpu_energy["reason"]:
            reasons["gpu_energy_j"] = gpu_energy["reason"]
    if host_energy["reason"] and any("host_rss_bytes" in r for r in rows):  # the host was sampled
        reasons["host_rapl_energy_j"] = host_energy["reason"]
    return {"derived": derived, "reasons": reasons}


def _gpu_figures(rows: list[Row], inside: list[Row], energy: dict[str, Any]) -> dict[str, Any]:
    throttled_fraction, throttle_seen = _throttle(inside)
    figures: dict[str, Any] = {
        # device-wide: every process's allocations plus the CUDA context, as nvidia-smi shows
        "gpu_mem_used_peak_bytes": _max(inside, "gpu_mem_used_bytes"),
        # this worker's allocations on the device (null where NVML cannot see its PID)
        "gpu_proc_mem_used_peak_bytes": _max(inside, "gpu_proc_mem_used_bytes"),
        "gpu_util_mean_pct": _mean(inside, "gpu_util_pct"),
        "gpu_power_mean_w": _mean(inside, "gpu_power_w"),  # mean over devices and samples
        "gpu_sm_clock_mean_mhz": _mean(inside, "gpu_sm_clock_mhz"),
        "gpu_energy_j": energy["j"],
        "gpu_energy_per_token_j": energy["per_token_j"],
        "gpu_throttled_fraction": throttled_fraction,
        "gpu_throttle_reasons_seen": throttle_seen,
    }
    indices = sorted({r["gpu_index"] for r in rows if r.get("gpu_index") is not None})
    if len(indices) > 1:  # a data-parallel cell: each GPU (rank) on its own, beside the aggregates
        figures["per_gpu"] = [
            _one_gpu(i, [r for r in inside if r.get("gpu_index") == i]) for i in indices
        ]
    return figures


def _one_gpu(index: int, inside: list[Row]) -> dict[str, Any]:
    return {
        "gpu_index": index,
        "gpu_mem_used_peak_bytes": _max(inside, "gpu_mem_used_bytes"),
        "gpu_util_mean_pct": _mean(inside, "gpu_util_pct"),
        "gpu_power_mean_w": _mean(inside, "gpu_power_w"),
    }
