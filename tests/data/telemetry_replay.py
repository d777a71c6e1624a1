"""GPU telemetry on a machine without a GPU: synthetic NVML samples through hlbench's real writer.

A record's `telemetry` section is written by `hlbench.telemetry.collect.Collector.finish`, from the
rows its sampler collected. Here the rows are given (a real run's host samples with NVML fields
added, or made-up ticks) and `finish` runs unchanged on them, behind a sampler that replays them, so
the section has exactly the fields and derived figures (`telemetry.derived`: peaks, energy,
throttling) that a GPU run writes. Used by make_fixtures.py and by the tests of what readers find in
real sections.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from hlbench.telemetry.collect import Collector, TelemetryConfig
from hlbench.telemetry.nvml import THROTTLE_BITS

Row = dict[str, Any]
SYNTHETIC_GPU = "synthetic GPU (replayed samples)"


def ticks(start_s: float, end_s: float, interval_s: float) -> list[Row]:
    """Sample times only, as a sampler without a host probe would stamp them."""
    n = int(round((end_s - start_s) / interval_s)) + 1
    return [{"t_monotonic_s": start_s + i * interval_s} for i in range(n)]


def with_gpu(
    rows: list[Row],
    power_w: float = 300.0,
    mem_bytes: tuple[float, float] = (300e6, 320e6),
    throttled_every: int = 0,
) -> list[Row]:
    """Each row with one GPU's NVML fields: memory rising linearly from mem_bytes[0] to
    mem_bytes[1], constant power, the total-energy counter integrating it (joules since the first
    sample), and a power-cap clock event on every `throttled_every`-th sample (0: never)."""
    t0, t1 = rows[0]["t_monotonic_s"], rows[-1]["t_monotonic_s"]
    span = (t1 - t0) or 1.0
    out = []
    for i, row in enumerate(rows):
        t = row["t_monotonic_s"]
        throttled = throttled_every and i % throttled_every == 0
        out.append(
            {
                **row,
                "gpu_index": 0,
                "gpu_mem_used_bytes": int(
                    mem_bytes[0] + (mem_bytes[1] - mem_bytes[0]) * (t - t0) / span
                ),
                # NVML cannot see the worker's PID in most containers
                "gpu_proc_mem_used_bytes": None,
                "gpu_util_pct": 97.0,
                "gpu_mem_util_pct": 40.0,
                "gpu_power_w": power_w,
                "gpu_energy_j": 1000.0 + power_w * (t - t0),
                "gpu_sm_clock_mhz": 1980.0,
                "gpu_mem_clock_mhz": 3201.0,
                "gpu_clock_event_reasons": THROTTLE_BITS["sw_power_cap"] if throttled else 0,
            }
        )
    return out


class ReplayedSampler:
    """Stands in for hlbench.telemetry.sampler.Sampler after a run: `stop()` gives the rows."""

    def __init__(self, rows: list[Row], status: dict[str, str] | None = None) -> None:
        self.rows = rows
        sampled_host = any("host_rss_bytes" in r for r in rows)
        self.host = SimpleNamespace(rapl=SimpleNamespace(domains=[])) if sampled_host else None
        self.nvml = SimpleNamespace(close=lambda: None)
        self._status = dict(status or {})

    def stop(self) -> list[Row]:
        return self.rows

    def status(self) -> dict[str, str]:
        return dict(self._status)


def telemetry_section(
    rows: list[Row],
    result: dict[str, Any],
    samples_path: Path,
    interval_s: float = 0.1,
    status: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The `telemetry` section Collector.finish writes for these rows (and the samples CSV at
    samples_path); `result`: the worker's result or a record (timing, metrics, backend_info)."""
    collector = Collector.__new__(Collector)  # not __init__: it would start real probes
    collector.config = TelemetryConfig(interval_s=interval_s)
    collector.status = {}
    collector.nvml_info = {
        "driver_version": None,
        "nvml_version": None,
        "devices": [{"index": 0, "name": SYNTHETIC_GPU}],
    }
    collector.sampler = ReplayedSampler(rows, status)
    return collector.finish(result, samples_path)
