"""The host side of a record's environment: what machine and software produced the numbers.

The framework side (versions, GPU name, driver, CUDA) is reported by the backend in the worker,
since only the worker imports a framework.
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

import hlbench


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass  # not Linux: fall back to platform's answer below
    return platform.processor() or None


def _git_commit() -> dict[str, Any]:
    """The commit of the hlbench source that ran, when it runs from a git checkout."""
    source = Path(hlbench.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if commit.returncode != 0:
            return {"commit": None, "dirty": None, "reason": "not a git checkout"}
        dirty = subprocess.run(
            ["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return {
            "commit": commit.stdout.strip(),
            "dirty": bool(dirty.stdout.strip()),
            "reason": None,
        }
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"commit": None, "dirty": None, "reason": f"git unavailable: {exc}"}


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=1)
def host_environment() -> dict[str, Any]:
    return {
        "hostname": platform.node(),
        "os": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "cpu_model": _cpu_model(),
        "cpu_logical_cores": os.cpu_count(),
        "cpu_physical_cores": psutil.cpu_count(logical=False),
        "cpu_affinity_cores": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else None,
        "memory_total_bytes": psutil.virtual_memory().total,
        "python": sys.version.split()[0],
        "hlbench_version": hlbench.__version__,
        "hlbench_git": _git_commit(),
        "numpy_version": _version("numpy"),
    }


def _package_versions() -> dict[str, str | None]:
    """Installed versions, read from package metadata: nothing is imported."""
    packages = ("torch", "tensorflow", "tensorflow-cpu", "keras", "nvidia-ml-py", "pandas", "scipy")
    return {p: _version(p) for p in packages}


def machine_report(calibrate: bool = True) -> dict[str, Any]:
    """What `hlbench env` adds to the host environment: NVML and its GPUs, package versions, and the
    CPU's measured fp32 GEMM rate (NumPy; workers measure their own framework's for MFU)."""
    from hlbench.telemetry.nvml import NVMLProbe, load_nvml
    from hlbench.telemetry.peaks import cpu_gemm_flops, gpu_peak

    report: dict[str, Any] = {"packages": _package_versions()}
    nvml, reason = load_nvml()
    if nvml is None:
        report["nvml"] = {"available": False, "reason": reason, "gpus": []}
    else:
        try:
            probe = NVMLProbe(nvml, list(range(nvml.nvmlDeviceGetCount())), None)
            info = probe.info()
            for device in info["devices"]:
                flops, source = gpu_peak(device["name"], "bf16")
                device["peak_bf16_dense_flops"], device["peak_source"] = flops, source
            report["nvml"] = {
                "available": True,
                "reason": None,
                "driver_version": info["driver_version"],
                "nvml_version": info["nvml_version"],
                "gpus": info["devices"],
            }
        finally:
            nvml.nvmlShutdown()
    if calibrate:
        flops, source = cpu_gemm_flops("numpy", "fp32")
        report["cpu_gemm_fp32_flops"], report["cpu_gemm_source"] = flops, source
    return report
