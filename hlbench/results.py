"""Records -> tidy pandas DataFrames: one row per (cell, repeat), units in the column names.

`load(paths)` gives the cell rows, `load_parity(paths)` the parity checks, and `load_all(paths)`
both from one pass over the files (the report uses it so that no file is parsed twice).

Rules:
- Every record must carry `schema_version == SCHEMA_VERSION`; anything else is a one-line UsageError
  naming the file, the line, the version found and the version supported.
- The rows are the current cell records (hlbench.records.identity): within a run, the last record of
  a (cell_hash, repeat) wins, so a resumed file's failure is replaced by the `ok` record that
  followed.
- Failed and skipped rows stay in the frame (`ok` False) so that tables show them; statistics
  elsewhere filter on `ok` and never average them in.
- Every field is read through hlbench.records' accessors; one the record lacks (no telemetry, a CPU
  without allocator statistics) is null here, never a guess. Raw per-step samples are parsed once,
  into NumPy arrays in the RAW_COLUMNS.
"""

from __future__ import annotations

import csv
import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hlbench.cell import launch_label
from hlbench.errors import UsageError
from hlbench.profiling.categories import CATEGORIES
from hlbench.profiling.phases import PHASES
from hlbench.records import environment as env
from hlbench.records import fields as f
from hlbench.records import identity as ident
from hlbench.records import memory
from hlbench.records import quality as q
from hlbench.records.shape import read_usable, skip_note
from hlbench.records.shards import shard_warnings

if TYPE_CHECKING:  # pandas is imported lazily so `import hlbench.results` stays cheap
    import pandas as pd

Paths = str | Path | Iterable[str | Path]  # one records file or directory, or several
# Axes every report expects, in display order; a record's other axes become columns after these.
KNOWN_AXES: tuple[str, ...] = ("precision", "accumulation", "pruning", "compile", "augmentation")

# Memory over time from the telemetry samples beside the records
TELEMETRY_COLUMNS = ("telemetry_mem_t_s", "telemetry_mem_bytes", "telemetry_windows_s")
# Columns holding NumPy arrays (raw samples), left out of csv/markdown tables.
RAW_COLUMNS: tuple[str, ...] = (
    "step_times_s",
    "window_mean_step_time_s",
    "train_loss_per_step_nats",
    *TELEMETRY_COLUMNS,
    "eval_curve",  # time to target: the eval curve's columns (a dict of lists)
)


@dataclass(frozen=True)
class Results:
    cells: pd.DataFrame  # one row per (cell, repeat)
    parity: pd.DataFrame  # one row per parity check
    files: tuple[Path, ...]  # the records files read, in order
    skipped: tuple[str, ...] = ()  # per file with malformed records: what was skipped (a note)
    warnings: tuple[str, ...] = ()  # what a sharded run's shards lack (hlbench.records.shards)


def expand_paths(paths: Paths) -> list[Path]:
    """Files as given (a str is one path); a directory: every *.jsonl below it, sorted."""
    out: list[Path] = []
    for path in map(Path, [paths] if isinstance(paths, (str, Path)) else paths):
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


def load(paths: Paths) -> pd.DataFrame:
    """Cell rows of the records files (one per cell and repeat, last record wins)."""
    return load_all(paths).cells


def load_parity(paths: Paths) -> pd.DataFrame:
    """Parity checks of the records files: one row per (parity record, check)."""
    return load_all(paths).parity


def load_all(paths: Paths) -> Results:
    import pandas as pd

    files = expand_paths(paths)
    cell_records: list[tuple[Path, dict[str, Any]]] = []
    parity_rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    for path in files:
        # another schema version is refused; malformed records are skipped, with a warning
        usable = read_usable(path, this_version=True)
        skipped.extend([skip_note(Path(path.name), usable.skipped)] if usable.skipped else [])
        for record in usable.records:
            kind = ident.kind(record)
            if kind == "parity":
                parity_rows.extend(_parity_rows(record, path))
            elif kind == "cell":
                cell_records.append((path, record))
            # a follower: the cell's figures are in node 0's record
    warnings = shard_warnings(record for _, record in cell_records)
    rows = [
        _cell_row(record, path)
        for path, record in ident.current(cell_records, lambda item: item[1])
    ]
    if not rows and not parity_rows:
        raise UsageError(f"no records in {', '.join(str(p) for p in files)}")
    if any("parallel" in row for row in rows):
        for row in rows:
            row.setdefault("parallel", "single")
    cells = pd.DataFrame(rows, columns=_cell_columns(rows))
    parity = pd.DataFrame(parity_rows, columns=PARITY_COLUMNS)
    return Results(cells, parity, tuple(files), tuple(skipped), tuple(warnings))


# --------------------------------------------------------------------------------------------------
# Cell rows


def _cell_columns(rows: Iterable[dict[str, Any]]) -> list[str]:
    """BASE_COLUMNS with any extra axes a record declares inserted after the known axes."""
    extra = sorted({k for row in rows for k in row} - set(BASE_COLUMNS))
    at = BASE_COLUMNS.index("augmentation") + 1
    return BASE_COLUMNS[:at] + extra + BASE_COLUMNS[at:]


PROFILE_COLUMNS = [
    *(f"phase_{p}_share" for p in PHASES),
    *(f"category_{c}_share" for c in CATEGORIES),
    "profile_step_s",
    "profile_trace_path",
]

BASE_COLUMNS: list[str] = [
    *("run_id", "suite", "source_file", "cell_id", "cell_hash", "repeat", "started_at"),  # identity
    *("workload", "model", "model_size", "backend", "device", *KNOWN_AXES),
    *("global_batch", "micro_batch", "seq_len", "tokens_per_step", "hold"),  # configuration
    *("status", "reason", "ok", "failed"),  # outcome
    *("tokens_per_s", "target_tokens_per_s", "step_time_median_s", "step_time_iqr_s"),  # speed
    *("step_time_mean_s", "window_step_time_cv", "steps_measured", "steps_planned"),
    *("windows_measured", "budget_hit", "startup_s", "measured_wall_s", "worker_wall_s"),
    *("peak_mem_bytes", "peak_mem_source", "host_peak_rss_bytes", "framework_memory_reason"),
    *("final_train_loss_nats", "eval_loss_nats", "entropy_floor_nats"),  # quality
    *("excess_train_loss_nats", "excess_eval_loss_nats"),
    *q.COLUMNS,  # time to target and training health
    *("energy_j", "energy_per_token_j", "flops_per_token", "peak_flops_per_s", "mfu"),  # efficiency
    *("mfu_dtype", "mfu_flag", "technique_event_count", "technique_event_s", "technique"),
    *("n_params", "sparsity", "loss_scale", "overflow_skipped_steps"),  # techniques
    *PROFILE_COLUMNS,  # the profiling pass (None without profiling; hlbench.profiling)
    *("throttled", "device_name", "driver_version", "framework_version"),  # environment
    *("hlbench_version", "hlbench_commit"),
    *RAW_COLUMNS,  # raw samples (NumPy arrays)
]


def _cell_row(record: dict[str, Any], path: Path) -> dict[str, Any]:
    axes, launch = ident.axes(record), ident.launch(record)
    row: dict[str, Any] = {
        "run_id": ident.run_id(record),
        "suite": ident.suite(record),
        "source_file": path.name,
        "cell_id": ident.cell_id(record),
        "cell_hash": ident.cell_hash(record),
        "repeat": record.get("repeat"),
        "started_at": ident.started_at(record),
        "workload": ident.workload_name(record),
        "model": ident.model(record),
        "model_size": ident.model_size(record),
        "backend": ident.backend(record),
        "device": ident.device(record),
        **{axis: axes.get(axis) for axis in KNOWN_AXES},
        **{axis: value for axis, value in axes.items() if axis not in KNOWN_AXES},
        # data parallel (suite `launcher:`): a variant like compile, e.g. "ddp2"; "single" is
        # filled in for one-device rows only when some row has it (load_all), so reports without
        # it are unchanged
        **({"parallel": launch_label(launch)} if launch else {}),
        **ident.batch_shape(record),
        "tokens_per_step": f.tokens_per_step(record),
        "status": ident.status(record),
        "reason": ident.reason(record),
        "ok": ident.is_ok(record),
        "failed": ident.is_failed(record),
    }
    row.update(_speed(record))
    row.update(_memory(record))
    row.update(_quality(record))
    row.update(q.row_figures(record))  # time to target and training health
    row.update(_efficiency(record))
    row.update(_techniques(record))
    row.update(_profile(record))
    row.update(_environment(record))
    row.update(_telemetry_memory(record, path))
    return row


def _profile(record: dict[str, Any]) -> dict[str, Any]:
    """Phase shares of the step and operator-category shares of the trace, one column each."""
    phases, categories = f.phase_shares(record), f.category_shares(record)
    return {
        **{f"phase_{p}_share": f.number(phases.get(p)) for p in PHASES},
        **{f"category_{c}_share": f.number(categories.get(c)) for c in CATEGORIES},
        "profile_step_s": f.profile_step_s(record),
        "profile_trace_path": f.profile_trace_path(record),
    }


def _speed(record: dict[str, Any]) -> dict[str, Any]:
    windows = f.measured_windows_s(record)
    sizes = [len(w) for w in windows]
    # one flat array and reduceat: per-window np.mean calls dominate a 10,000-record load otherwise
    steps = np.fromiter(itertools.chain.from_iterable(windows), dtype=np.float64, count=sum(sizes))
    offsets = np.cumsum([0, *sizes[:-1]])
    window_means = np.add.reduceat(steps, offsets) / sizes if windows else np.empty(0)
    return {
        "tokens_per_s": f.tokens_per_s(record),
        "target_tokens_per_s": f.target_tokens_per_s(record),
        "step_time_median_s": f.step_time_median_s(record),
        "step_time_iqr_s": f.step_time_iqr_s(record),
        "step_time_mean_s": f.step_time_mean_s(record),
        "window_step_time_cv": _window_cv(window_means),
        "steps_measured": f.steps_measured(record),
        "steps_planned": f.steps_planned(record),
        "windows_measured": f.windows_measured(record),
        "budget_hit": f.budget_hit(record),
        "startup_s": f.startup_s(record),
        "measured_wall_s": f.measured_wall_s(record),
        "worker_wall_s": f.worker_wall_s(record),
        "step_times_s": steps,
        "window_mean_step_time_s": window_means,
    }


def _window_cv(window_means: np.ndarray) -> float | None:
    # Spread of the window means, not of single steps: it says whether the throughput a window
    # measures is reproducible, which is what the reported tokens/s rests on (pyperf judges its
    # values the same way).
    if len(window_means) < 2:
        return None
    with np.errstate(invalid="ignore"):  # a non-finite window (a hostile record) gives NaN
        mean = float(window_means.mean())
        return math.sqrt(float(((window_means - mean) ** 2).sum()) / (len(window_means) - 1)) / mean


def _memory(record: dict[str, Any]) -> dict[str, Any]:
    peak = memory.peak_memory(record)
    return {
        "peak_mem_bytes": peak.peak_bytes if peak else None,
        "peak_mem_source": peak.source if peak else None,
        "host_peak_rss_bytes": memory.host_peak_rss_bytes(record),
        "framework_memory_reason": memory.framework_memory_reason(record),
    }


def _quality(record: dict[str, Any]) -> dict[str, Any]:
    per_step = f.train_loss_per_step_nats(record)
    return {
        "final_train_loss_nats": f.final_train_loss_nats(record),
        "eval_loss_nats": f.eval_loss_nats(record),
        "entropy_floor_nats": f.entropy_floor_nats(record),
        "excess_train_loss_nats": f.excess_train_loss_nats(record),
        "excess_eval_loss_nats": f.excess_eval_loss_nats(record),
        # None (a diverged step) becomes NaN so that a loss plot shows the gap
        "train_loss_per_step_nats": np.array(
            [np.nan if v is None else v for v in per_step], dtype=np.float64
        ),
    }


def _efficiency(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "energy_j": f.energy_j(record),
        "energy_per_token_j": f.energy_per_token_j(record),
        "flops_per_token": f.flops_per_token(record),
        "peak_flops_per_s": f.mfu_peak_flops(record),
        "mfu": f.mfu(record),
        "mfu_dtype": f.mfu_dtype(record),
        "mfu_flag": f.mfu_flag(record),
    }


def _techniques(record: dict[str, Any]) -> dict[str, Any]:
    events = f.technique_events(record)
    return {
        "n_params": f.n_params(record),
        "sparsity": f.sparsity(record),
        "loss_scale": f.loss_scale(record),
        "overflow_skipped_steps": f.overflow_skipped_steps(record),
        # events a technique ran between steps (pruning), off the clock: count and seconds
        "technique_event_count": len(events),
        "technique_event_s": sum(s for _, s in events),
        "technique": ", ".join(sorted({t for t, _ in events})) or None,
    }


def _environment(record: dict[str, Any]) -> dict[str, Any]:
    gpus = sorted({name for name in env.gpu_names(record) or [] if name})
    throttled = f.throttled(record)
    return {
        "throttled": bool(throttled) if throttled is not None else None,
        "device_name": ", ".join(gpus) if gpus else env.cpu_model(record),
        "driver_version": env.driver_version(record),
        "framework_version": env.framework_version(record),
        "hlbench_version": env.hlbench_version(record),
        "hlbench_commit": env.hlbench_commit(record),
    }


def _telemetry_memory(record: dict[str, Any], records_path: Path) -> dict[str, Any]:
    """Memory over time from the samples CSV beside the records (hlbench.telemetry), in seconds from
    the first measured window: GPU memory used (else the worker RSS), and the windows; or empty."""
    empty = {c: np.empty((0, 2) if c.endswith("windows_s") else 0) for c in TELEMETRY_COLUMNS}
    rel = f.telemetry_samples_path(record)
    # only a file beside the records (as the writer puts it), never a path out of their directory
    if not rel or Path(rel).is_absolute() or ".." in Path(rel).parts:
        return empty
    if not (records_path.parent / rel).is_file():
        return empty
    windows = f.window_spans_s(record)
    t0 = windows[0][0] if windows else 0.0
    times, values = [], []
    try:
        with open(records_path.parent / rel, newline="", encoding="utf-8") as file:
            for sample in csv.DictReader(file):
                value = sample.get("gpu_mem_used_bytes") or sample.get("host_rss_bytes")
                if value:
                    times.append(float(sample["t_monotonic_s"]) - t0)
                    values.append(float(value))
    except (OSError, ValueError, KeyError, TypeError, csv.Error):  # a damaged samples file
        return empty
    return {
        "telemetry_mem_t_s": np.array(times, dtype=np.float64),
        "telemetry_mem_bytes": np.array(values, dtype=np.float64),
        "telemetry_windows_s": np.array(windows, dtype=np.float64).reshape(-1, 2) - t0,
    }


# --------------------------------------------------------------------------------------------------
# Parity rows

PARITY_COLUMNS: list[str] = [
    *("run_id", "suite", "source_file", "workload", "precision", "backends", "passed", "check"),
    *("check_passed", "rel_diff", "tolerance", "values", "detail"),
]


def _parity_rows(record: dict[str, Any], path: Path) -> list[dict[str, Any]]:
    base = {
        "run_id": ident.run_id(record),
        "suite": ident.suite(record),
        "source_file": path.name,
        "workload": record.get("workload"),
        "precision": record.get("precision"),
        "backends": "/".join(record.get("backends") or []),
        "passed": record.get("passed"),
    }
    checks = record.get("checks") or []
    if not checks:  # a parity record that ran no check still says whether it passed
        unchecked = dict.fromkeys(("check", "check_passed", "rel_diff", "tolerance", "values"))
        return [{**base, **unchecked, "detail": ident.reason(record)}]
    return [
        {
            **base,
            "check": c.get("name"),
            "check_passed": c.get("passed"),
            "rel_diff": f.number(c.get("rel_diff")),
            "tolerance": f.number(c.get("tolerance")),
            "values": c.get("values"),
            "detail": c.get("detail"),
        }
        for c in checks
        if isinstance(c, dict)
    ]
