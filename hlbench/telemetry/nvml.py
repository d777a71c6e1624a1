"""NVML (nvidia-ml-py) device sampling, degrading to a reason when NVML cannot be used.

`open_nvml()` returns an NVMLProbe or the reason there is none (no library, no driver, no
permission). Each `sample()` reads, per device: memory used (device-wide), the worker's own memory
when NVML can see its PID (not in many containers, whose PID namespace hides host PIDs), GPU and
memory utilisation, power, the total-energy counter (Volta and newer), SM and memory clocks and the
clock-event (throttle) reasons. A call this GPU does not support gives null for that field and a
reason, once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

# Clock-event reasons that mean the GPU is held below the clocks it would otherwise run (NVML's
# nvmlClocksEventReason* bits). Idle, application-clock and display settings, and sync boost are not
# throttling; power cap, thermal and hardware slowdowns are.
THROTTLE_BITS = {
    "sw_power_cap": 0x4,
    "hw_slowdown": 0x8,
    "sw_thermal_slowdown": 0x20,
    "hw_thermal_slowdown": 0x40,
    "hw_power_brake_slowdown": 0x80,
}
THROTTLE_MASK = sum(THROTTLE_BITS.values())

SAMPLE_FIELDS = (
    "gpu_index",
    "gpu_mem_used_bytes",
    "gpu_proc_mem_used_bytes",
    "gpu_util_pct",
    "gpu_mem_util_pct",
    "gpu_power_w",
    "gpu_energy_j",
    "gpu_sm_clock_mhz",
    "gpu_mem_clock_mhz",
    "gpu_clock_event_reasons",
)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class NVMLProbe:
    """Open NVML handles for the devices a cell uses; `sample()` returns one dict per device."""

    def __init__(
        self,
        nvml: Any,
        indices: list[int],
        pid: int | None,
        pids: Callable[[], set[int]] | None = None,
    ) -> None:
        self.nvml = nvml
        self.pid = pid
        # a data-parallel cell's processes (launcher and ranks), looked up at each sample; default
        # {pid}
        self.pids = pids or (lambda: {pid} if pid is not None else set())
        count = nvml.nvmlDeviceGetCount()
        self.indices = [i for i in indices if 0 <= i < count]
        self.handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in self.indices]
        self.status: dict[str, str] = {}  # field -> why it is null
        if len(self.indices) < len(indices):
            self.status["gpu_index"] = f"NVML sees {count} device(s); asked for {indices}"

    def info(self) -> dict[str, Any]:
        n = self.nvml
        return {
            "driver_version": self._try(
                "driver_version", lambda: _text(n.nvmlSystemGetDriverVersion())
            ),
            "nvml_version": self._try("nvml_version", lambda: _text(n.nvmlSystemGetNVMLVersion())),
            "devices": [
                {
                    "index": i,
                    "name": self._try("name", lambda h=h: _text(n.nvmlDeviceGetName(h))),
                    "memory_total_bytes": self._try(
                        "memory_total", lambda h=h: int(n.nvmlDeviceGetMemoryInfo(h).total)
                    ),
                    "power_limit_w": self._try(
                        "power_limit", lambda h=h: n.nvmlDeviceGetEnforcedPowerLimit(h) / 1000.0
                    ),
                }
                for i, h in zip(self.indices, self.handles)
            ],
        }

    def _try(self, field: str, read: Callable[[], Any]) -> Any:
        """One NVML read; NotSupported/NoPermission/... → None, the reason remembered once per
        field."""
        if field in self.status and self.status[field].startswith("!"):
            return None  # failed before with a permanent error: do not retry every sample
        try:
            return read()
        except self.nvml.NVMLError as exc:
            self.status[field] = f"!{type(exc).__name__}: {exc}"
            return None

    def _process_memory(self, handle: Any, ours: set[int]) -> int | None:
        if self.pid is None:
            return None
        procs = self._try(
            "gpu_proc_mem_used_bytes",
            lambda: self.nvml.nvmlDeviceGetComputeRunningProcesses(handle),
        )
        if procs is None:
            return None
        used = [proc.usedGpuMemory for proc in procs if proc.pid in ours]
        if used:
            return None if any(u is None for u in used) else int(sum(used))
        if procs and "gpu_proc_mem_used_bytes" not in self.status:
            # Others are visible but not the worker: its PID is not the one NVML reports (PID
            # namespace).
            self.status["gpu_proc_mem_used_bytes"] = (
                f"worker PID {self.pid} not among the PIDs NVML reports (a container's PID "
                f"namespace hides it)"
            )
        return None

    def sample(self) -> list[dict[str, Any]]:
        n = self.nvml
        rows = []
        ours = self.pids()  # once per sample: a data-parallel cell's process tree is a /proc walk
        for index, h in zip(self.indices, self.handles):
            mem = self._try("gpu_mem_used_bytes", lambda h=h: n.nvmlDeviceGetMemoryInfo(h))
            util = self._try("gpu_util_pct", lambda h=h: n.nvmlDeviceGetUtilizationRates(h))
            power_mw = self._try("gpu_power_w", lambda h=h: n.nvmlDeviceGetPowerUsage(h))
            energy_mj = self._try(
                "gpu_energy_j", lambda h=h: n.nvmlDeviceGetTotalEnergyConsumption(h)
            )
            rows.append(
                {
                    "gpu_index": index,
                    "gpu_mem_used_bytes": int(mem.used) if mem is not None else None,
                    "gpu_proc_mem_used_bytes": self._process_memory(h, ours),
                    "gpu_util_pct": util.gpu if util is not None else None,
                    "gpu_mem_util_pct": util.memory if util is not None else None,
                    "gpu_power_w": power_mw / 1000.0 if power_mw is not None else None,
                    "gpu_energy_j": energy_mj / 1000.0 if energy_mj is not None else None,
                    "gpu_sm_clock_mhz": self._try(
                        "gpu_sm_clock_mhz", lambda h=h: n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_SM)
                    ),
                    "gpu_mem_clock_mhz": self._try(
                        "gpu_mem_clock_mhz",
                        lambda h=h: n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_MEM),
                    ),
                    "gpu_clock_event_reasons": self._try(
                        "gpu_clock_event_reasons",
                        lambda h=h: n.nvmlDeviceGetCurrentClocksEventReasons(h),
                    ),
                }
            )
        return rows

    def reasons(self) -> dict[str, str]:
        return {k: v.lstrip("!") for k, v in self.status.items()}

    def close(self) -> None:
        with contextlib.suppress(self.nvml.NVMLError):
            self.nvml.nvmlShutdown()


def load_nvml() -> tuple[Any | None, str | None]:
    """The initialised pynvml module, or None and why not."""
    try:
        import pynvml  # nvidia-ml-py
    except ImportError as exc:
        return None, f"nvidia-ml-py is not installed ({exc})"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return None, f"NVML unavailable: {type(exc).__name__}: {exc}"
    return pynvml, None


def open_nvml(
    indices: list[int],
    pid: int | None,
    nvml: Any | None = None,
    pids: Callable[[], set[int]] | None = None,
) -> tuple[NVMLProbe | None, str | None]:
    """An NVMLProbe for `indices` (NVML device indices), or None and the reason.

    `nvml`: an already-initialised NVML module (tests pass a fake); by default pynvml is loaded
    here.
    """
    if not indices:
        return None, "the cell runs on the CPU"
    if nvml is None:
        nvml, reason = load_nvml()
        if nvml is None:
            return None, reason
    try:
        probe = NVMLProbe(nvml, indices, pid, pids)
    except nvml.NVMLError as exc:
        return None, f"NVML device query failed: {type(exc).__name__}: {exc}"
    if not probe.indices:
        probe.close()
        return None, probe.status.get("gpu_index", "no NVML device")
    return probe, None


def gpu_count() -> int:
    """NVIDIA GPUs NVML sees on this machine (all of them, whatever CUDA_VISIBLE_DEVICES says); 0
    without
    NVML or without GPUs."""
    nvml, _ = load_nvml()
    if nvml is None:
        return 0
    try:
        return int(nvml.nvmlDeviceGetCount())
    except nvml.NVMLError:
        return 0
    finally:
        with contextlib.suppress(nvml.NVMLError):
            nvml.nvmlShutdown()
