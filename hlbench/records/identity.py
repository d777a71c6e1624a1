"""What a record is: its kind and status, the cell it measured, and whether it is that cell's
current record.

The rule for "current", used by every reader (tables, reports, compare, baselines): within a run,
the last record of a (cell hash, repeat) wins. A resumed file can hold a failure and, later, the
`ok` record that replaced it; only the latter is current. Current records keep the order in which
their winning records were written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

Record = dict[str, Any]
T = TypeVar("T")

# `cell`: one (cell, repeat) of a run; `parity`: a parity check; `follower`: how another node's
# ranks of a multi-node cell ended (the cell's figures are in node 0's `cell` record).
KINDS = ("cell", "parity", "follower")


def lookup(record: Any, *keys: str) -> Any:
    """record[k1][k2]... or None where any level is absent or null."""
    for key in keys:
        if not isinstance(record, dict):
            return None
        record = record.get(key)
    return record


def schema_version(record: Record) -> Any:
    return record.get("schema_version")


def kind(record: Record) -> str:
    return str(record.get("kind", "cell"))  # records before `kind` existed are cell records


def status(record: Record) -> str | None:
    return record.get("status")


def is_ok(record: Record) -> bool:
    return status(record) == "ok"


def is_skipped(record: Record) -> bool:
    return status(record) == "skipped"


def is_failed(record: Record) -> bool:
    """oom, timeout, error or crashed: neither ok nor skipped."""
    return status(record) not in ("ok", "skipped")


def reason(record: Record) -> str | None:
    return record.get("reason")


def run_id(record: Record) -> str | None:
    return record.get("run_id")


def suite(record: Record) -> str | None:
    return record.get("suite")


def cell_id(record: Record) -> str | None:
    return record.get("cell_id")


def cell_hash(record: Record) -> str | None:
    return record.get("cell_hash")


def repeat(record: Record) -> int:
    return int(record.get("repeat") or 0)


def started_at(record: Record) -> str | None:
    return record.get("started_at")


def shard(record: Record) -> tuple[int, int, int | None] | None:
    """(index, count, cells the shard owns) of a sharded run's record; None for a run in one
    piece, or a section that does not describe a shard."""
    section = record.get("shard")
    if not isinstance(section, dict):
        return None
    index, count, cells = section.get("index"), section.get("count"), section.get("cells")
    if not isinstance(index, int) or not isinstance(count, int) or not 0 <= index < count:
        return None
    return index, count, cells if isinstance(cells, int) else None


def key(record: Record) -> tuple[str, str, int]:
    """(run, cell hash, repeat): records with the same key measured the same thing."""
    return str(run_id(record)), str(cell_hash(record)), repeat(record)


def current(items: Iterable[T], record_of: Callable[[T], Record]) -> list[T]:
    """The items whose record is current (see the module docstring); other kinds are left out, and
    so is a cell record without a cell hash, which belongs to no cell."""
    latest: dict[tuple[str, str, int], T] = {}
    for item in items:
        record = record_of(item)
        if kind(record) != "cell" or cell_hash(record) is None:
            continue
        k = key(record)
        latest.pop(k, None)  # re-inserted, so that the order follows the winning record
        latest[k] = item
    return list(latest.values())


def current_records(records: Iterable[Record]) -> list[Record]:
    """The current cell records among `records`."""
    return current(records, lambda record: record)


# --------------------------------------------------------------------------------------------------
# The cell a record measured (its `cell` section)


def cell(record: Record) -> Record:
    return record.get("cell") or {}


def workload(record: Record) -> Record:
    return cell(record).get("workload") or {}


def workload_name(record: Record) -> str | None:
    return workload(record).get("name")


def model(record: Record) -> str | None:
    return lookup(workload(record), "spec", "model")


def model_size(record: Record) -> str | None:
    return lookup(workload(record), "spec", "size")


def backend(record: Record) -> str | None:
    return cell(record).get("backend")


def requested_device(record: Record) -> str | None:
    """The suite's device for the cell ("auto", "cpu", "cuda:1"), not what the worker resolved."""
    return cell(record).get("device")


def device(record: Record) -> str | None:
    """The device the worker ran on, else (no worker: skipped before starting) the requested one."""
    ran_on = lookup(record, "backend_info", "device")
    return ran_on if ran_on is not None else requested_device(record)


def axes(record: Record) -> Record:
    return cell(record).get("axes") or {}


def launch(record: Record) -> Record | None:
    """A data-parallel cell's launch (strategy, world size, nodes); None on one device."""
    return cell(record).get("launch") or None


def batch_shape(record: Record) -> dict[str, Any]:
    """global_batch, micro_batch, seq_len and hold (which of the batch sizes accumulation keeps)."""
    w = workload(record)
    return {k: w.get(k) for k in ("global_batch", "micro_batch", "seq_len", "hold")}
