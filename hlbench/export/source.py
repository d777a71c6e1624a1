"""What every exporter reads: the current cell records of the runs given, each with its results row
(the figures `hlbench table` shows, same names), its per-step series and the files beside it.

Records are read as `hlbench report` reads them (hlbench.results: files or directories, malformed
records skipped with a count, the current record of a (run, cell, repeat) wins); the raw record is
kept beside its row because the exporters attach it whole.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hlbench.errors import UsageError
from hlbench.records import fields as f
from hlbench.records import identity
from hlbench.records.identity import Record, lookup
from hlbench.records.shape import read_usable

# The results columns that are figures (speed, memory, loss, energy, efficiency, techniques,
# profile), as opposed to identity, configuration and environment; each exporter writes the ones a
# record has as numbers.
_FIRST_FIGURE, _AFTER_FIGURES = "tokens_per_s", "throttled"
# The per-step series, named with their units.
STEP_TIME_SERIES, LOSS_SERIES = "step_time_s", "train_loss_nats"


@dataclass(frozen=True)
class CellRun:
    """One current cell record (a cell and repeat of one suite run) and what it came with."""

    record: Record
    path: Path  # its records file
    row: dict[str, Any]  # its hlbench.results row

    @property
    def suite(self) -> str:
        return str(identity.suite(self.record) or "unnamed")

    @property
    def run_id(self) -> str:
        return str(identity.run_id(self.record))

    @property
    def cell_id(self) -> str:
        return str(identity.cell_id(self.record) or identity.cell_hash(self.record))

    @property
    def repeat(self) -> int:
        return identity.repeat(self.record)

    @property
    def status(self) -> str:
        return str(identity.status(self.record))

    @property
    def key(self) -> str:
        """The record's identity: the same key is the same measurement (a resumed run may have
        replaced its record, which `digest` tells)."""
        run, cell_hash, repeat = identity.key(self.record)
        return f"{run}/{cell_hash}/r{repeat}"

    @property
    def digest(self) -> str:
        """SHA-256 of the record's canonical JSON: whether an exported copy is still this one."""
        text = json.dumps(self.record, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()


def load_cells(paths: Sequence[Path]) -> list[CellRun]:
    """The current cell records of the records files (or directories) given, in written order."""
    from hlbench.results import expand_paths, load_all

    files = expand_paths(paths)
    results = load_all(files)  # warns about malformed records once, on stderr
    rows = {
        (str(r["run_id"]), str(r["cell_hash"]), _repeat(r["repeat"])): r
        for r in results.cells.to_dict("records")
    }
    found: list[tuple[Path, Record]] = []
    for path in files:
        found += [(path, r) for r in read_usable(path, True, err=io.StringIO()).records]
    cells = [
        CellRun(record, path, rows[identity.key(record)])
        for path, record in identity.current(found, lambda item: item[1])
        if identity.key(record) in rows
    ]
    if not cells:
        raise UsageError(f"{', '.join(map(str, paths))}: no cell records (parity records only?)")
    return cells


def _repeat(value: Any) -> int:
    # a column with a missing repeat is float, with NaN for it; identity.repeat reads it as 0
    return 0 if value is None or value != value else int(value)


def by_suite_run(cells: Iterable[CellRun]) -> dict[tuple[str, str], list[CellRun]]:
    """The cells grouped by (suite, run id), in the order each run first appears."""
    groups: dict[tuple[str, str], list[CellRun]] = {}
    for cell in cells:
        groups.setdefault((cell.suite, cell.run_id), []).append(cell)
    return groups


def figures(cell: CellRun) -> dict[str, float]:
    """The record's figures that are finite numbers, by their results column name."""
    from hlbench.results import BASE_COLUMNS

    names = BASE_COLUMNS[BASE_COLUMNS.index(_FIRST_FIGURE) : BASE_COLUMNS.index(_AFTER_FIGURES)]
    out = {}
    for name in names:
        value = f.number(_plain(cell.row.get(name)))
        if value is not None and math.isfinite(value):
            out[name] = value
    return out


def _plain(value: Any) -> Any:
    """A NumPy scalar as the Python number it holds (a bool stays a bool, so it is no figure)."""
    return value.item() if hasattr(value, "item") and not isinstance(value, (list, dict)) else value


def parameters(record: Record) -> dict[str, str]:
    """The cell's definition as flat strings: its axes by name (precision, accumulation, ...), the
    rest of its `cell` section with dotted keys (workload.seq_len, optimizer.lr, ...)."""
    cell = dict(identity.cell(record))
    out = {_key(k): _text(v) for k, v in (cell.pop("axes", None) or {}).items() if v is not None}
    for key, value in _flatten(cell, ""):
        out.setdefault(_key(key), _text(value))
    return out


def _flatten(value: Any, prefix: str) -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        items: list[tuple[str, Any]] = []
        for k, v in value.items():
            items += _flatten(v, f"{prefix}{k}.")
        return items
    return [] if value is None else [(prefix.rstrip("."), value)]


def _key(key: Any) -> str:
    # what every MLflow store and TensorBoard accept in a name; a hostile record stays harmless
    return re.sub(r"[^\w.\-/ ]", "_", str(key))[:250] or "_"


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:500]


@dataclass(frozen=True)
class Series:
    """A per-step series: optimizer step index (from the first warmup step), value, and an
    estimated Unix time of the step's end (the worker's start, its build, and the step times)."""

    steps: list[int]
    values: list[float]
    times_s: list[float]


def step_series(cell: CellRun) -> dict[str, Series]:
    """Per-step step time (measured steps) and train loss (every step, warmup included), on one
    step axis so that the same step number is the same optimizer step in both."""
    record = cell.record
    raw = lookup(record, "timing", "warmup_step_times_s")  # not in the shape check: guard it
    warmup = [float(t) for t in raw if _positive(t)] if isinstance(raw, list) else []
    measured = f.step_times_s(record)
    start = started_unix_s(record) + (f.number(lookup(record, "timing", "build_s")) or 0.0)
    ends, total = [], start
    for t in [*warmup, *measured]:
        total += t
        ends.append(total)
    out: dict[str, Series] = {}
    if measured:
        first = len(warmup)
        steps = list(range(first, first + len(measured)))
        out[STEP_TIME_SERIES] = Series(steps, measured, ends[first:])
    losses = [
        (i, float(v))
        for i, v in enumerate(f.train_loss_per_step_nats(record))
        if f.number(v) is not None and math.isfinite(v)
    ]
    if losses:
        times = [ends[i] if i < len(ends) else total for i, _ in losses]
        out[LOSS_SERIES] = Series([i for i, _ in losses], [v for _, v in losses], times)
    return out


def _positive(value: Any) -> bool:
    number = f.number(value)
    return number is not None and math.isfinite(number) and number > 0


def started_unix_s(record: Record) -> float:
    """When the cell's worker started (Unix seconds; 0 where the record does not say)."""
    text = identity.started_at(record)
    try:
        started = datetime.fromisoformat(str(text))
    except ValueError:
        return 0.0
    if started.tzinfo is None:
        started = started.replace(tzinfo=timezone.utc)
    return started.timestamp()


def ended_unix_s(record: Record) -> float:
    return started_unix_s(record) + (f.worker_wall_s(record) or 0.0)


def side_files(cell: CellRun) -> dict[str, Path]:
    """The files the run left beside the records that belong to this record: the worker's log and
    the raw telemetry samples, by the artifact folder they go to. Only files inside the records
    file's directory: a path out of it is never followed."""
    base = cell.path.parent
    candidates = {}
    log = cell.record.get("log_path")
    if isinstance(log, str) and log:
        candidates["logs"] = base / f"{cell.run_id}.logs" / Path(log).name
    samples = f.telemetry_samples_path(cell.record)
    if samples and not Path(samples).is_absolute() and ".." not in Path(samples).parts:
        candidates["telemetry"] = base / samples
    return {folder: path for folder, path in candidates.items() if path.is_file()}


def tags(cell: CellRun) -> dict[str, str]:
    """Identity, outcome and environment of the record: what to search and filter runs by."""
    row = cell.row
    values = {
        "hlbench.record_key": cell.key,
        "hlbench.record_sha256": cell.digest,
        "hlbench.suite": cell.suite,
        "hlbench.run_id": cell.run_id,
        "hlbench.cell_id": cell.cell_id,
        "hlbench.cell_hash": identity.cell_hash(cell.record),
        "hlbench.repeat": cell.repeat,
        "hlbench.status": cell.status,
        "hlbench.reason": identity.reason(cell.record),
        "hlbench.device_name": row.get("device_name"),
        "hlbench.framework_version": row.get("framework_version"),
        "hlbench.hlbench_version": row.get("hlbench_version"),
        "hlbench.hlbench_commit": row.get("hlbench_commit"),
        "hlbench.records_file": str(cell.path),
    }
    return {k: _text(v) for k, v in values.items() if v is not None and v == v}  # v == v: not NaN
