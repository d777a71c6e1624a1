"""Peak memory of a cell record, and what each figure measures.

A record can carry several peaks, which measure different things: the framework allocator's (what
the model's tensors needed at the peak of the measured windows), NVML's per-process and device-wide
memory (the allocator's pool plus the CUDA context; device-wide also other processes), the
allocator's reserved pool, and the worker's host RSS (the framework's import included; the only
figure a CPU run has). A reader takes the best one present and says which it took, and never
compares figures of different kinds as if they were one.
"""

from __future__ import annotations

from dataclasses import dataclass

from hlbench.records.fields import number
from hlbench.records.identity import Record, lookup

# What a figure measures.
DEVICE_ALLOCATOR = "device allocator"
ALLOCATOR_RESERVED = "allocator reserved"
NVML_PROCESS = "NVML process"
NVML_DEVICE = "NVML device"
HOST_RSS = "host RSS"


@dataclass(frozen=True)
class MemorySource:
    name: str  # how readers name the figure (results' `peak_mem_source`)
    path: tuple[str, ...]  # where the writer puts it in the record
    measures: str
    label: str  # a short label for tables


# Best first.
PEAK_MEMORY_SOURCES: tuple[MemorySource, ...] = (
    MemorySource(
        "torch_cuda_max_allocated_bytes",
        ("memory", "torch_cuda_max_allocated_bytes"),
        DEVICE_ALLOCATOR,
        "torch allocator",
    ),
    MemorySource(
        "tf_gpu_peak_bytes", ("memory", "tf_gpu_peak_bytes"), DEVICE_ALLOCATOR, "TF allocator"
    ),
    MemorySource(
        "nvml_process_peak_bytes",
        ("telemetry", "derived", "gpu_proc_mem_used_peak_bytes"),
        NVML_PROCESS,
        "NVML process",
    ),
    MemorySource(
        "nvml_device_peak_used_bytes",
        ("telemetry", "derived", "gpu_mem_used_peak_bytes"),
        NVML_DEVICE,
        "NVML device",
    ),
    MemorySource(
        "torch_cuda_max_reserved_bytes",
        ("memory", "torch_cuda_max_reserved_bytes"),
        ALLOCATOR_RESERVED,
        "torch reserved",
    ),
    MemorySource("host_peak_rss_bytes", ("memory", "host_peak_rss_bytes"), HOST_RSS, "host RSS"),
)
SOURCES_BY_NAME = {source.name: source for source in PEAK_MEMORY_SOURCES}


@dataclass(frozen=True)
class PeakMemory:
    peak_bytes: float
    source: str  # a MemorySource name
    measures: str


def _figure(record: Record, source: MemorySource) -> PeakMemory | None:
    value = number(lookup(record, *source.path))
    return None if value is None else PeakMemory(value, source.name, source.measures)


def peak_memory(record: Record, measures: str | None = None) -> PeakMemory | None:
    """The best peak the record has (of one kind, when `measures` is given); None without one."""
    for source in PEAK_MEMORY_SOURCES:
        if measures is None or source.measures == measures:
            figure = _figure(record, source)
            if figure is not None:
                return figure
    return None


def allocator_peak_bytes(record: Record) -> float | None:
    """The framework allocator's peak over the measured windows (none on a CPU)."""
    figure = peak_memory(record, DEVICE_ALLOCATOR)
    return figure.peak_bytes if figure else None


def host_peak_rss_bytes(record: Record) -> float | None:
    """The worker process's peak resident set (ru_maxrss), its whole life."""
    return number(lookup(record, "memory", "host_peak_rss_bytes"))


def framework_memory_reason(record: Record) -> str | None:
    """Why the framework gave no allocator figure (a CPU run), when it did not."""
    return lookup(record, "memory", "framework_memory_reason")
