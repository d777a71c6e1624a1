"""The sampling thread: every `interval_s`, one row per device (or one host-only row), stamped with
time.monotonic() — the clock the worker stamps its measured windows with (hlbench.worker.measure).

It sleeps on an Event between samples (never busy-waits) and lives in the parent process, so the
worker's timed loop runs no telemetry code.
"""

from __future__ import annotations

import csv
import threading
import time
from pathlib import Path
from typing import Any

from hlbench.telemetry.host import HostProbe
from hlbench.telemetry.nvml import SAMPLE_FIELDS, NVMLProbe

COLUMNS = ("t_monotonic_s", "host_rss_bytes", "host_cpu_pct", "host_rapl_energy_j", *SAMPLE_FIELDS)
DEFAULT_INTERVAL_S = 0.1


class Sampler:
    def __init__(
        self, host: HostProbe | None, nvml: NVMLProbe | None, interval_s: float = DEFAULT_INTERVAL_S
    ) -> None:
        self.host, self.nvml, self.interval_s = host, nvml, interval_s
        self.rows: list[dict[str, Any]] = []
        self.failure: str | None = None  # why sampling stopped early, if it did
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hlbench-telemetry", daemon=True)

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def _run(self) -> None:
        next_t = time.monotonic()
        while not self._stop.is_set():
            try:
                self.sample_once()

            except Exception as exc:
                self.failure = f"sampling stopped early: {type(exc).__name__}: {exc}"
                return
            next_t += self.interval_s
            # a fixed schedule (no drift); if a sample took longer than the interval, skip ahead
            delay = next_t - time.monotonic()
            if delay < 0:
                next_t, delay = time.monotonic(), 0.0
            self._stop.wait(delay)

    def sample_once(self) -> None:
        t = time.monotonic()
        host = self.host.sample() if self.host else {}
        devices = self.nvml.sample() if self.nvml else [{}]
        for device in devices:
            self.rows.append({"t_monotonic_s": t, **host, **device})

    def stop(self) -> list[dict[str, Any]]:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5 * self.interval_s + 1.0)
        return self.rows

    def status(self) -> dict[str, str]:
        status: dict[str, str] = {"sampler": self.failure} if self.failure else {}
        if self.host:
            status.update(self.host.status)
        if self.nvml:
            status.update(self.nvml.reasons())
        return status


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in COLUMNS})
