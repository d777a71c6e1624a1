"""Where a record ran: the host (hlbench.env) and the framework the worker reported (the backends'
`environment()`); None where the record does not say (a cell skipped before a worker started has no
framework section)."""

from __future__ import annotations

from typing import Any

from hlbench.records.identity import Record, lookup

FRAMEWORK_VERSION_FIELDS = ("torch_version", "tensorflow_version", "cuda_version", "cudnn_version")


def host(record: Record) -> Record:
    return lookup(record, "env", "host") or {}


def framework(record: Record) -> Record | None:
    """The worker's framework section; None when no worker reported one."""
    return lookup(record, "env", "framework")


def gpu_names(record: Record) -> list[str | None] | None:
    """The name of each GPU the framework saw (None: unknown), [] on a machine without one; None
    when no worker reported."""
    section = framework(record)
    gpus = section.get("gpus") if section else None
    if gpus is None:
        return None
    return [g.get("name") for g in gpus if isinstance(g, dict)]


def driver_version(record: Record) -> str | None:
    """The NVIDIA driver's version (PyTorch workers with NVML only)."""
    return (framework(record) or {}).get("driver_version")


def framework_versions(record: Record) -> dict[str, Any]:
    """torch_version, tensorflow_version, cuda_version, cudnn_version; None where not reported."""
    section = framework(record) or {}
    return {key: section.get(key) for key in FRAMEWORK_VERSION_FIELDS}


def framework_version(record: Record) -> str | None:
    """'torch 2.5.1+cu124', 'tensorflow 2.21.0'."""
    section = framework(record) or {}
    name = section.get("framework")
    version = section.get(f"{name}_version") if name else None
    return f"{name} {version}" if name and version else None


def worker_start(record: Record) -> str | None:
    """ "forked" (from a pre-imported worker) or "spawned" (a fresh interpreter); None in records
    written before workers were forked, and for cells that never started one."""
    value = record.get("worker_start")
    return value if isinstance(value, str) else None


def cpu_model(record: Record) -> str | None:
    return host(record).get("cpu_model")


def hlbench_version(record: Record) -> str | None:
    return host(record).get("hlbench_version")


def hlbench_git(record: Record) -> dict[str, Any] | None:
    """The commit hlbench ran from: commit, dirty, and why unknown when it is."""
    return host(record).get("hlbench_git")


def hlbench_commit(record: Record) -> str | None:
    return lookup(host(record), "hlbench_git", "commit")
