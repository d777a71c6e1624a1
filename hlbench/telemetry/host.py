"""Host figures: the worker's resident memory and CPU use (psutil), and CPU package energy (RAPL).

RAPL is read from Linux's powercap interface (/sys/class/powercap/intel-rapl:N/energy_uj, also used
for AMD CPUs); it is often absent (VMs) or root-only since 2020 (CVE-2020-8694). Then it is null and
the reason says which.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
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
                self.reason = (
                    f"{zone / 'energy_uj'} is not readable by this user (root-only on most kernels)"
                )
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


class ProcessTree:
    """The processes of one cell: the worker itself, or for a data-parallel cell its launcher(s) and
    every descendant (torchrun's ranks), found anew at each sample because ranks start after the
    launcher."""

    def __init__(self, pids: int | Sequence[int], tree: bool = False) -> None:
        self.roots = [psutil.Process(p) for p in ([pids] if isinstance(pids, int) else pids)]
        self.tree = tree
        self._known: dict[
            int, psutil.Process
        ] = {}  # kept, so cpu_percent measures since the last sample

    def processes(self) -> list[psutil.Process]:
        procs = list(self.roots)
        if self.tree:
            for root in self.roots:
                try:
                    procs += root.children(recursive=True)
                except psutil.Error:
                    continue
        out = []
        for proc in procs:
            known = self._known.get(proc.pid)
            if known is None:
                known = self._known[proc.pid] = proc
                with contextlib.suppress(psutil.Error):
                    known.cpu_percent(None)  # the first call only sets the reference point
            out.append(known)
        return out

    def pids(self) -> set[int]:
        return {p.pid for p in self.processes()}


class HostProbe:
    """psutil on the worker process: RSS (its own, children excluded) and CPU use since the last
    sample.
    With `tree` (data-parallel cells): summed over the launcher and all its descendants, the
    ranks."""

    def __init__(
        self, pid: int | Sequence[int], rapl: RAPL | None = None, tree: bool = False
    ) -> None:
        self.processes = ProcessTree(pid, tree)
        self.processes.processes()  # reference points for cpu_percent
        self.rapl = rapl if rapl is not None else RAPL()
        self.status: dict[str, str] = {}
        if self.rapl.reason:
            self.status["host_rapl_energy_j"] = self.rapl.reason

    def sample(self) -> dict[str, Any]:
        rss = cpu = None  # None: the worker is exiting
        for proc in self.processes.processes():
            try:
                with proc.oneshot():
                    rss = (rss or 0) + proc.memory_info().rss
                    cpu = (cpu or 0.0) + proc.cpu_percent(
                        None
                    )  # % of one core; 200 = two cores busy
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        return {
            "host_rss_bytes": rss,
            "host_cpu_pct": cpu,
            "host_rapl_energy_j": self.rapl.energy_j(),
        }
