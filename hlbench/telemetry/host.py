"""Host figures: the worker's resident memory and CPU use (psutil), and CPU package energy (RAPL).

RAPL is read from Linux's powercap interface (/sys/class/powercap/intel-rapl:N/energy_uj, also used
for AMD CPUs); it is often absent (VMs) or root-only since 2020 (CVE-2020-8694). Then it is null and
the reason says which.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psutil

POWERCAP = Path("/sys/class/powercap")


class RAPL:
    """Package-domain energy counters (microjoules, wrapping at max_energy_range_uj)."""

    def __init__(self, root: Path = POWERCAP) -> None:
        self.domains: list[tuple[Path, int]] = []
        self.reason: str | None = None
        self._last: list[int] = []
        self._wraps: list[int] = []
        if not root.is_dir():
            self.reason = f"no RAPL powercap interface ({root} absent)"
            return
        for zone in sorted(root.glob("intel-rapl:[0-9]*")):
            if ":" in zone.name.split("intel-rapl:", 1)[1]:
                continue  # a subzone (core, uncore, dram): the package zone already includes it
            try:
                limit = int((zone / "max_energy_range_uj").read_text())
                (zone / "energy_uj").read_text()
            except PermissionError:
                self.reason = f"{zone / 'energy_uj'} is not readable by this user (root-only on most kernels)"
                self.domains = []
                return
            except (OSError, ValueError) as exc:
                self.reason = f"{zone}: {exc}"
                continue
            self.domains.append((zone / "energy_uj", limit))
        if not self.domains and self.reason is None:
            self.reason = f"no RAPL package zone under {root}"
        self._last = [0] * len(self.domains)
        self._wraps = [0] * len(self.domains)

    def energy_j(self) -> float | None:
        """Cumulative package energy since this object was made, all packages together."""
        if not self.domains:
            return None
        total = 0
        for i, (path, limit) in enumerate(self.domains):
            value = int(path.read_text())
            if value < self._last[i]:
                self._wraps[i] += 1
            self._last[i] = value
            total += value + self._wraps[i] * limit
        return total / 1e6


class HostProbe:
    """psutil on the worker process: RSS (its own, children excluded) and CPU use since the last sample."""

    def __init__(self, pid: int, rapl: RAPL | None = None) -> None:
        self.process = psutil.Process(pid)
        self.process.cpu_percent(None)  # the first call only sets the reference point
        self.rapl = rapl if rapl is not None else RAPL()
        self.status: dict[str, str] = {}
        if self.rapl.reason:
            self.status["host_rapl_energy_j"] = self.rapl.reason

    def sample(self) -> dict[str, Any]:
        try:
            with self.process.oneshot():
                rss = self.process.memory_info().rss
                cpu = self.process.cpu_percent(None)  # % of one core; 200 = two cores busy
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            rss = cpu = None  # the worker is exiting
        return {"host_rss_bytes": rss, "host_cpu_pct": cpu, "host_rapl_energy_j": self.rapl.energy_j()}
