"""The runner's side of telemetry for one worker: start the samplers, stop them, write the raw
samples
beside the records and build the record's `telemetry` section."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from hlbench.handoff import cuda_visible_devices
from hlbench.telemetry.derive import summarize
from hlbench.telemetry.host import HostProbe
from hlbench.telemetry.nvml import open_nvml
from hlbench.telemetry.sampler import DEFAULT_INTERVAL_S, Sampler, write_csv


@dataclass(frozen=True)
class TelemetryConfig:
    enabled: bool = True
    interval_s: float = DEFAULT_INTERVAL_S


def nvml_indices(device: str) -> list[int]:
    """NVML device indices for a cell's requested device. CUDA numbers the devices
    CUDA_VISIBLE_DEVICES
    exposes; NVML numbers all of them in PCI order, so the first is mapped through the second (set
    CUDA_DEVICE_ORDER=PCI_BUS_ID for CUDA's own order to agree with NVML's)."""
    if device == "cpu":
        return []
    index = 0 if device == "auto" else int(device.partition(":")[2] or 0)
    entries = cuda_visible_devices()
    if entries is not None:
        if index >= len(entries) or not entries[index].isdigit():
            return []  # hidden, or named by UUID: not mapped here
        index = int(entries[index])
    return [index]


class Collector:
    """`pid`: the worker; for a data-parallel cell its launcher(s), with `tree` so that every rank
    (a descendant) is counted, and `gpus` the NVML indices of all the GPUs the cell's ranks use
    here."""

    def __init__(
        self,
        device: str,
        pid: int | list[int],
        config: TelemetryConfig,
        tree: bool = False,
        gpus: list[int] | None = None,
    ) -> None:
        self.config = config
        self.status: dict[str, str] = {}
        try:
            host = HostProbe(pid, tree=tree)
        except psutil.Error as exc:
            host, self.status["host"] = None, f"psutil cannot read the worker: {exc}"
        root = pid if isinstance(pid, int) else pid[0]
        nvml, reason = open_nvml(
            nvml_indices(device) if gpus is None else gpus,
            root,
            pids=host.processes.pids if host is not None else None,
        )
        if reason:
            self.status["nvml"] = reason
        self.nvml_info = nvml.info() if nvml else None
        self.sampler = Sampler(host, nvml, config.interval_s).start()

    def finish(self, result: dict[str, Any] | None, samples_path: Path) -> dict[str, Any]:
        """Stop sampling; write the samples; the record's telemetry section (result: the worker's,
        if any)."""
        rows = self.sampler.stop()
        if self.sampler.nvml:
            self.sampler.nvml.close()
        write_csv(rows, samples_path)
        windows = ((result or {}).get("timing") or {}).get("window_monotonic_s") or []
        metrics = (result or {}).get("metrics") or {}
        steps = ((result or {}).get("timing") or {}).get("steps_measured")
        tokens = metrics.get("tokens_per_step", 0) * steps if steps else None
        summary = (
            summarize(rows, windows, tokens)
            if windows
            else {"derived": None, "reasons": {"windows": "the worker reported no measured window"}}
        )
        # a source's own reason (no RAPL interface, no NVML) says more than the derived "no samples"
        status = {**summary["reasons"], **self.status, **self.sampler.status()}
        device = ((result or {}).get("backend_info") or {}).get("device", "")
        if "nvml" in status and device and "cpu" in device.lower():
            status["nvml"] = "the cell ran on the CPU"
        return {
            "interval_s": self.config.interval_s,
            # relative to the records file's directory, so a results folder can be moved or archived
            "samples_path": f"{samples_path.parent.name}/{samples_path.name}",
            "n_samples": len(rows),
            "sources": {
                "host": self.sampler.host is not None,
                "nvml": self.sampler.nvml is not None,
                "rapl": bool(self.sampler.host and self.sampler.host.rapl.domains),
            },
            "nvml": self.nvml_info,
            "derived": summary["derived"],
            "to_target": to_target_energy(rows, windows, result),
            "telemetry_status": dict(sorted(status.items())),  # field or source -> why it is null
        }


def to_target_energy(
    rows: list[dict[str, Any]], windows: list[list[float]], result: dict[str, Any] | None
) -> dict[str, Any] | None:
    """Time to target: the energy figures over the windows up to the one that reached the target
    (the worker's `quality.windows_to_target`; warmup and evals excluded); None otherwise."""
    quality = (result or {}).get("quality") or {}
    n = quality.get("windows_to_target")
    if not isinstance(n, int) or n < 1 or n > len(windows):
        return None
    summary = summarize(rows, windows[:n], None)
    keys = ("gpu_energy_j", "host_rapl_energy_j")
    reasons = {k: v for k, v in summary["reasons"].items() if k in keys}
    # an interval shorter than the counters resolve (MIN_ENERGY_WINDOW_S) gives null and says so
    return {**{key: summary["derived"].get(key) for key in keys}, "reasons": reasons}
