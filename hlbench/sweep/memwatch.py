"""Whether a SIGKILL was plausibly the kernel's OOM killer: the parent watches the memory of a
cell's processes while they run, so that a crashed record blames the OOM killer only on evidence
(the cgroup's oom_kill count rose, the processes held most of the memory, or the host's available
memory ran low) and never a person's `kill -9`."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import psutil

HIGH_SHARE = 0.5  # the cell's processes' resident memory, of the memory limit
LOW_AVAILABLE_SHARE = 0.1  # the host's available memory, of the limit

# where the kernel counts its OOM kills: cgroup v2's memory.events, v1's memory.oom_control
_OOM_COUNTERS = ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control")
_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


class MemoryWatch:
    """Samples of one process group's memory (hlbench.sweep.launch.ProcessGroup takes them as it
    polls), then `oom_kill_evidence` once it has ended."""

    def __init__(self) -> None:
        self.limit = memory_limit()
        self.oom_kills_before = oom_kill_count()
        self.peak_rss = 0
        self.min_available: int | None = None

    def sample(self, processes: Iterable[psutil.Process]) -> None:
        rss = 0
        for proc in processes:
            try:
                rss += proc.memory_info().rss
            except psutil.Error:
                continue  # gone meanwhile
        self.peak_rss = max(self.peak_rss, rss)
        available = psutil.virtual_memory().available
        self.min_available = min(available, self.min_available or available)

    def oom_kill_evidence(self) -> str | None:
        """Why the kernel's OOM killer plausibly sent a SIGKILL, or None when nothing says so."""
        kills = oom_kill_count()
        if (
            kills is not None
            and self.oom_kills_before is not None
            and kills > self.oom_kills_before
        ):
            return "the memory cgroup's oom_kill count rose"
        if self.peak_rss >= HIGH_SHARE * self.limit:
            return f"the cell's processes held {self.peak_rss / self.limit:.0%} of memory"
        if self.min_available is not None and self.min_available < LOW_AVAILABLE_SHARE * self.limit:
            return f"available memory fell to {self.min_available / self.limit:.0%}"
        return None


def memory_limit() -> int:
    """Bytes this host (or its memory cgroup, when lower) lets the processes use."""
    limit = psutil.virtual_memory().total
    for path in _LIMITS:
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            limit = min(limit, int(text))
    return limit


def oom_kill_count() -> int | None:
    """The memory cgroup's count of OOM kills, or None where the kernel does not show it."""
    for path in _OOM_COUNTERS:
        try:
            lines = Path(path).read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
    return None
