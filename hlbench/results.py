"""Records -> tidy pandas DataFrames: one row per (cell, repeat), units in the column names.

`load(paths)` gives the cell rows, `load_parity(paths)` the parity checks, and `load_all(paths)` both
from one pass over the files (the report uses it so that no file is parsed twice).

Rules:
- Every record must carry `schema_version == SCHEMA_VERSION`; anything else is a one-line UsageError
  naming the file, the line, the version found and the version supported.
- Within a run, the last record of a (cell_hash, repeat) wins: a resumed file may hold a failure and,
  later, the `ok` record that replaced it.
- Failed and skipped rows stay in the frame (`ok` False) so that tables show them; statistics elsewhere
  filter on `ok` and never average them in.
- A field the record lacks (an older backend, no telemetry, a CPU without allocator statistics) is null
  here, never a guess. Raw per-step samples are parsed once, into NumPy arrays in the RAW_COLUMNS.
"""

from __future__ import annotations

import csv

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from hlbench import __version__
from hlbench.cell import launch_label
from hlbench.errors import UsageError
from hlbench.profiling.categories import CATEGORIES
from hlbench.profiling.phases import PHASES
from hlbench.records import SCHEMA_VERSION, read_records

if TYPE_CHECKING:  # pandas is imported lazily so `import hlbench.results` stays cheap
    import pandas as pd

# Axes every report expects, in display order; a record's other axes become columns after these.
KNOWN_AXES: tuple[str, ...] = ("precision", "accumulation", "pruning", "compile", "augmentation")

# The memory figure a row reports, best first: the framework allocator's peak (what the model's tensors
# really needed), then NVML's per-process and device-wide figures, then the worker's host RSS (which
# includes the framework's import and is the only figure a CPU run has).
PEAK_MEMORY_SOURCES: tuple[str, ...] = (
    "torch_cuda_max_allocated_bytes",
    "tf_gpu_peak_bytes",
    "tf_peak_bytes",
    "tf_peak_bytes_in_use",
    "nvml_process_peak_bytes",
    "nvml_device_peak_used_bytes",
    "host_peak_rss_bytes",
)

# Columns holding NumPy arrays (raw samples), left out of csv/markdown tables.
RAW_COLUMNS: tuple[str, ...] = (
    "step_times_s",
    "window_mean_step_time_s",
    "train_loss_per_step_nats",
    "telemetry_mem_t_s",
    "telemetry_mem_bytes",
)


@dataclass(frozen=True)
class Results:
    cells: "pd.DataFrame"  # one row per (cell, repeat)
    parity: "pd.DataFrame"  # one row per parity check
    files: tuple[Path, ...]  # the records files read, in order


def expand_paths(paths: Iterable[Path]) -> list[Path]:
    """Files as given; a directory stands for every *.jsonl below it (sorted, for determinism)."""
    out: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(path.rglob("*.jsonl"))
            if not found:
                raise UsageError(f"{path}: directory holds no *.jsonl records files")
            out.extend(found)
        elif path.exists():
            out.append(path)
        else:
            raise UsageError(f"{path}: no such records file or directory")
    if not out:
        raise UsageError("no records files given")
    return out


def load(paths: Sequence[Path]) -> "pd.DataFrame":
    """Cell rows of the records files (one per cell and repeat, last record wins)."""
    return load_all(paths).cells


def load_parity(paths: Sequence[Path]) -> "pd.DataFrame":
    """Parity checks of the records files: one row per (parity record, check)."""
    return load_all(paths).parity


def load_all(paths: Sequence[Path]) -> Results:
    import pandas as pd

    files = expand_paths(paths)
    latest: dict[tuple[str, str, int], dict[str, Any]] = {}
    parity_rows: list[dict[str, Any]] = []
    for path in files:
        for line, record in enumerate(read_records(path), start=1):
            _check_schema(path, line, record)
            kind = record.get("kind", "cell")
            if kind == "parity":
                parity_rows.extend(_parity_rows(record, path))
            elif kind == "follower":
                continue  # a multi-node run's other nodes: the cell's figures are in node 0's record
            elif kind == "cell":
                key = (str(record.get("run_id")), str(record.get("cell_hash")), int(record.get("repeat") or 0))
                latest.pop(key, None)  # re-insert so that order follows the winning record
                latest[key] = _cell_row(record, path)
            else:
                raise UsageError(f"{path}: line {line}: unknown record kind {kind!r} (expected 'cell', 'parity' or 'follower')")
    if not latest and not parity_rows:
        raise UsageError(f"no records in {', '.join(str(p) for p in files)}")
    if any("parallel" in row for row in latest.values()):
        for row in latest.values():
            row.setdefault("parallel", "single")
    cells = pd.DataFrame(list(latest.values()), columns=_cell_columns(latest.values()))
    parity = pd.DataFrame(parity_rows, columns=PARITY_COLUMNS)
    return Results(cells=cells, parity=parity, files=tuple(files))


def _check_schema(path: Path, line: int, record: Any) -> None:
    if not isinstance(record, dict):
        raise UsageError(f"{path}: line {line}: not a JSON object; not an hlbench records file")
    version = record.get("schema_version")
    if version == SCHEMA_VERSION:
        return
    if not isinstance(version, int):
        raise UsageError(
            f"{path}: line {line}: no schema_version; not an hlbench records file "
            f"(hlbench {__version__} reads schema version {SCHEMA_VERSION})"
        )
    hint = "upgrade hlbench to read it" if version > SCHEMA_VERSION else "re-run the suite with this hlbench"
    raise UsageError(
        f"{path}: line {line}: records schema version {version}; hlbench {__version__} reads only "
        f"version {SCHEMA_VERSION} ({hint})"
    )


# ---------------------------------------------------------------------------------------------------
# Cell rows

def _get(d: Any, *keys: str) -> Any:
    """d[k1][k2]... or None where any level is absent or null."""
    for key in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _cell_columns(rows: Iterable[dict[str, Any]]) -> list[str]:
    """BASE_COLUMNS with any extra axes a record declares inserted after the known axes."""
    extra = sorted({k for row in rows for k in row} - set(BASE_COLUMNS))
    at = BASE_COLUMNS.index("augmentation") + 1
    return BASE_COLUMNS[:at] + extra + BASE_COLUMNS[at:]


PROFILE_COLUMNS = [*(f"phase_{p}_share" for p in PHASES), *(f"category_{c}_share" for c in CATEGORIES),
                   "profile_step_s", "profile_trace_path"]

BASE_COLUMNS: list[str] = [
    # identity
    "run_id", "suite", "source_file", "cell_id", "cell_hash", "repeat", "started_at",
    "workload", "model", "model_size", "backend", "device", *KNOWN_AXES,
    # configuration
    "global_batch", "micro_batch", "seq_len", "tokens_per_step", "hold",
    # outcome
    "status", "reason", "ok", "failed",
    # speed
    "tokens_per_s", "target_tokens_per_s", "step_time_median_s", "step_time_iqr_s", "step_time_mean_s",
    "window_step_time_cv", "steps_measured", "steps_planned", "windows_measured", "budget_hit",
    "startup_s", "measured_wall_s", "worker_wall_s",
    # memory
    "peak_mem_bytes", "peak_mem_source", "host_peak_rss_bytes", "framework_memory_reason",
    # quality
    "final_train_loss_nats", "eval_loss_nats", "entropy_floor_nats", "excess_train_loss_nats",
    "excess_eval_loss_nats",
    # energy and efficiency
    "energy_j", "energy_per_token_j", "flops_per_token", "peak_flops_per_s", "mfu",
    # techniques
    "n_params", "sparsity", "loss_scale", "overflow_skipped_steps",
    # profiling pass (None without profiling; hlbench.profiling)
    *PROFILE_COLUMNS,
    # environment
    "throttled", "device_name", "driver_version", "framework_version", "hlbench_version", "hlbench_commit",
    # raw samples (NumPy arrays)
    *RAW_COLUMNS,
]


def _cell_row(record: dict[str, Any], path: Path) -> dict[str, Any]:
    cell = record.get("cell") or {}
    workload = cell.get("workload") or {}
    axes = cell.get("axes") or {}
    status = record.get("status")
    row: dict[str, Any] = {
        "run_id": record.get("run_id"),
        "suite": record.get("suite"),
        "source_file": path.name,
        "cell_id": record.get("cell_id"),
        "cell_hash": record.get("cell_hash"),
        "repeat": record.get("repeat"),
        "started_at": record.get("started_at"),
        "workload": workload.get("name"),
        "model": _get(workload, "spec", "model"),
        "model_size": _get(workload, "spec", "size"),
        "backend": cell.get("backend"),
        "device": _first(_get(record, "backend_info", "device"), cell.get("device")),
        **{axis: axes.get(axis) for axis in KNOWN_AXES},
        **{axis: value for axis, value in axes.items() if axis not in KNOWN_AXES},
        # data parallel (suite `launcher:`): a variant like compile, e.g. "ddp2"; "single" is filled in
        # for one-device rows only when some row has it (load_all), so reports without it are unchanged
        **({"parallel": launch_label(cell["launch"])} if cell.get("launch") else {}),
        "global_batch": workload.get("global_batch"),
        "micro_batch": workload.get("micro_batch"),
        "seq_len": workload.get("seq_len"),
        "hold": workload.get("hold"),
        "status": status,
        "reason": record.get("reason"),
        "ok": status == "ok",
        "failed": status not in ("ok", "skipped"),
    }
    row.update(_speed(record))
    row.update(_memory({**(record.get("memory") or {}), **_telemetry_peaks(record)}))
    row.update(_quality(record.get("loss") or {}))
    row.update(_efficiency(record, row))
    row.update(_techniques(record.get("backend_info") or {}, record.get("metrics") or {}))
    row.update(_environment(record))
    row.update(_profile(record.get("profile")))
    row.update(_telemetry_memory(record.get("telemetry"), path, _get(record, "timing", "window_monotonic_s")))
    if row["tokens_per_step"] is None and row["global_batch"] and row["seq_len"]:
        row["tokens_per_step"] = row["global_batch"] * row["seq_len"]
    return row


def _profile(profile: dict[str, Any] | None) -> dict[str, Any]:
    """Phase shares of the step and operator-category shares of the trace, one column each."""
    profile = profile if isinstance(profile, dict) else {}
    phases, categories = profile.get("phase_shares") or {}, profile.get("category_shares") or {}
    return {
        **{f"phase_{p}_share": _num(phases.get(p)) for p in PHASES},
        **{f"category_{c}_share": _num(categories.get(c)) for c in CATEGORIES},
        "profile_step_s": _num(profile.get("step_s")),
        "profile_trace_path": profile.get("trace_path"),
    }


def _speed(record: dict[str, Any]) -> dict[str, Any]:
    timing, metrics = record.get("timing") or {}, record.get("metrics") or {}
    windows = [w for w in (timing.get("window_step_times_s") or []) if w]
    sizes = [len(w) for w in windows]
    # one flat array and reduceat: per-window np.mean calls dominate a 10,000-record load otherwise
    steps = np.fromiter(itertools.chain.from_iterable(windows), dtype=np.float64, count=sum(sizes))
    offsets = np.cumsum([0, *sizes[:-1]])
    window_means = np.add.reduceat(steps, offsets) / sizes if windows else np.empty(0)
    # Spread of the window means, not of single steps: it says whether the throughput a window measures
    # is reproducible, which is what the reported tokens/s rests on (pyperf judges its values the same way).
    cv = None
    if len(window_means) >= 2:
        mean = float(window_means.mean())
        cv = math.sqrt(float(((window_means - mean) ** 2).sum()) / (len(window_means) - 1)) / mean
    return {
        "tokens_per_step": metrics.get("tokens_per_step"),
        "tokens_per_s": _num(metrics.get("tokens_per_s")),
        "target_tokens_per_s": _num(metrics.get("target_tokens_per_s")),
        "step_time_median_s": _num(metrics.get("step_time_median_s")),
        "step_time_iqr_s": _num(metrics.get("step_time_iqr_s")),
        "step_time_mean_s": _num(metrics.get("step_time_mean_s")),
        "window_step_time_cv": cv,
        "steps_measured": _first(timing.get("steps_measured"), len(steps) if windows else None),
        "steps_planned": timing.get("steps_planned"),
        "windows_measured": len(windows) if timing else None,
        "budget_hit": timing.get("budget_hit"),
        "startup_s": _num(timing.get("startup_s")),
        "measured_wall_s": _num(metrics.get("measured_wall_s")),
        "worker_wall_s": _num(record.get("worker_wall_s")),
        "step_times_s": steps,
        "window_mean_step_time_s": window_means,
    }


def _memory(memory: dict[str, Any]) -> dict[str, Any]:
    others = sorted(k for k in memory if k.endswith("_bytes") and k not in PEAK_MEMORY_SOURCES)
    source = next((k for k in (*PEAK_MEMORY_SOURCES[:-1], *others, PEAK_MEMORY_SOURCES[-1])
                   if _num(memory.get(k)) is not None), None)
    return {
        "peak_mem_bytes": _num(memory.get(source)) if source else None,
        "peak_mem_source": source,
        "host_peak_rss_bytes": _num(memory.get("host_peak_rss_bytes")),
        "framework_memory_reason": memory.get("framework_memory_reason"),
    }


def _quality(loss: dict[str, Any]) -> dict[str, Any]:
    per_step = loss.get("train_loss_per_step") or []
    return {
        "final_train_loss_nats": _num(loss.get("final_train_loss")),
        "eval_loss_nats": _num(loss.get("eval_loss")),
        "entropy_floor_nats": _num(loss.get("entropy_floor_nats")),
        "excess_train_loss_nats": _num(loss.get("excess_train_loss_nats")),
        "excess_eval_loss_nats": _num(loss.get("excess_eval_loss_nats")),
        # None (a diverged step) becomes NaN so that a loss plot shows the gap
        "train_loss_per_step_nats": np.array([np.nan if v is None else v for v in per_step], dtype=np.float64),
    }


def _efficiency(record: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    metrics, info = record.get("metrics") or {}, record.get("backend_info") or {}
    telemetry = record.get("telemetry") if isinstance(record.get("telemetry"), dict) else {}
    flops = _num(info.get("flops_per_token"))
    derived = _get(telemetry, "derived") or {}
    peak = _num(_first(metrics.get("mfu_peak_flops"), info.get("peak_flops_per_s"), metrics.get("peak_flops_per_s")))
    mfu = _num(_first(metrics.get("mfu"), info.get("mfu")))
    if mfu is None and flops and peak and row["tokens_per_s"]:
        mfu = row["tokens_per_s"] * flops / peak
    # NVML's GPU energy first; RAPL's CPU package energy where there is no GPU figure
    energy = _num(_first(derived.get("gpu_energy_j"), derived.get("host_rapl_energy_j"), metrics.get("energy_j"),
                         _get(telemetry, "energy_j")))
    per_token = _num(_first(derived.get("gpu_energy_per_token_j"), derived.get("host_rapl_energy_per_token_j"),
                            metrics.get("energy_per_token_j")))
    if per_token is None and energy is not None and row["tokens_per_s"] and row["measured_wall_s"]:
        per_token = energy / (row["tokens_per_s"] * row["measured_wall_s"])
    return {"energy_j": energy, "energy_per_token_j": per_token, "flops_per_token": flops,
            "peak_flops_per_s": peak, "mfu": mfu}


def _techniques(info: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any]:
    pruning = info.get("pruning") if isinstance(info.get("pruning"), dict) else {}
    return {
        "n_params": info.get("n_params"),
        "sparsity": _num(_first(pruning.get("sparsity_global"), info.get("sparsity_global"), info.get("sparsity"),
                                metrics.get("sparsity"))),
        "loss_scale": _num(_first(info.get("loss_scale_final"), info.get("loss_scale"), metrics.get("loss_scale"))),
        "overflow_skipped_steps": _first(info.get("overflow_skipped_steps"), metrics.get("overflow_skipped_steps")),
    }


def _environment(record: dict[str, Any]) -> dict[str, Any]:
    host = _get(record, "env", "host") or {}
    framework = _get(record, "env", "framework") or {}
    gpus = framework.get("gpus") or []
    gpu_names = sorted({g.get("name") for g in gpus if isinstance(g, dict) and g.get("name")})
    drivers = sorted({str(g.get("driver")) for g in gpus if isinstance(g, dict) and g.get("driver")})
    name = framework.get("framework")
    version = _first(framework.get(f"{name}_version") if name else None, framework.get("version"))
    telemetry = record.get("telemetry") if isinstance(record.get("telemetry"), dict) else {}
    fraction = _num(_get(telemetry, "derived", "gpu_throttled_fraction"))
    throttled = _first(fraction > 0 if fraction is not None else None, telemetry.get("throttled"),
                       telemetry.get("throttling_seen"))
    return {
        "throttled": bool(throttled) if throttled is not None else None,
        "device_name": ", ".join(gpu_names) if gpu_names else host.get("cpu_model"),
        "driver_version": _first(framework.get("driver_version"), ", ".join(drivers) or None),
        "framework_version": f"{name} {version}" if name and version else None,
        "hlbench_version": host.get("hlbench_version"),
        "hlbench_commit": _get(host, "hlbench_git", "commit"),
    }


def _telemetry_peaks(record: dict[str, Any]) -> dict[str, Any]:
    """NVML's peaks from the telemetry section, under the names PEAK_MEMORY_SOURCES ranks."""
    derived = _get(record, "telemetry", "derived") or {}
    return {
        "nvml_process_peak_bytes": derived.get("gpu_proc_mem_used_peak_bytes"),
        "nvml_device_peak_used_bytes": derived.get("gpu_mem_used_peak_bytes"),
    }


def _telemetry_memory(telemetry: Any, records_path: Path, windows: Any) -> dict[str, Any]:
    """Memory over time from the raw samples CSV beside the records file (hlbench.telemetry):
    seconds from the start of the first measured window, and the GPU's device-wide memory used (or
    the worker's RSS where there is no GPU). Empty arrays when there are no samples."""
    empty = {"telemetry_mem_t_s": np.empty(0), "telemetry_mem_bytes": np.empty(0)}
    rel = telemetry.get("samples_path") if isinstance(telemetry, dict) else None
    if not rel:
        return empty
    path = records_path.parent / rel
    if not path.is_file():
        return empty
    t0 = windows[0][0] if windows and windows[0] else 0.0
    times, values = [], []
    with open(path, newline="") as f:
        for sample in csv.DictReader(f):
            value = sample.get("gpu_mem_used_bytes") or sample.get("host_rss_bytes")
            if value:
                times.append(float(sample["t_monotonic_s"]) - t0)
                values.append(float(value))
    return {"telemetry_mem_t_s": np.array(times, dtype=np.float64), "telemetry_mem_bytes": np.array(values, dtype=np.float64)}


# ---------------------------------------------------------------------------------------------------
# Parity rows

PARITY_COLUMNS: list[str] = [
    "run_id", "suite", "source_file", "workload", "precision", "backends", "passed",
    "check", "check_passed", "rel_diff", "tolerance", "values", "detail",
]


def _parity_rows(record: dict[str, Any], path: Path) -> list[dict[str, Any]]:
    base = {
        "run_id": record.get("run_id"),
        "suite": record.get("suite"),
        "source_file": path.name,
        "workload": record.get("workload"),
        "precision": record.get("precision"),
        "backends": "/".join(record.get("backends") or []),
        "passed": record.get("passed"),
    }
    checks = record.get("checks") or []
    if not checks:  # a parity record that ran no check still says whether it passed
        return [{**base, "check": None, "check_passed": None, "rel_diff": None, "tolerance": None,
                 "values": None, "detail": record.get("reason")}]
    return [
        {**base, "check": c.get("name"), "check_passed": c.get("passed"), "rel_diff": _num(c.get("rel_diff")),
         "tolerance": _num(c.get("tolerance")), "values": c.get("values"), "detail": c.get("detail")}
        for c in checks if isinstance(c, dict)
    ]
