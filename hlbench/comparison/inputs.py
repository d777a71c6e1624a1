"""What `compare` and `baseline` read: the current cell records of one run (or of the runs asked
for), from a records file or a directory of them.

A records file normally holds one run, but `--resume` across sessions, a user's `cat`, or a
directory of several runs of a suite (A/A runs for `--calibrate`, a baseline's history) can hold
more, and a run cut into shards (hlbench.sweep.shard) is a directory of files, one per shard, read
as one run (a missing shard, or a cell two shards ran, is said in `warnings`). Two runs that share
a cell must never be merged silently: by default the latest run is used
(the one whose records were written last) and the choice is said; `--run-id ID` (repeatable) picks
runs, and `--run-id all` pools every run's repeats (each repeat is its own worker process, so
pooling runs adds independent samples).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hlbench.errors import UsageError
from hlbench.records import identity
from hlbench.records.shape import read_usable
from hlbench.records.shards import shard_notes

ALL_RUNS = "all"
# Directories below a records file that hold its logs, telemetry and traces, never records.
_SIDE_SUFFIXES = (".logs", ".telemetry", ".profile")


@dataclass(frozen=True)
class Run:
    """The current cell records of one run (or of the runs picked), and where they came from."""

    path: Path  # the records file, or the directory given
    records: list[dict[str, Any]]
    run_ids: list[str] = field(default_factory=list)  # the runs used, in the order written
    note: str = ""  # which run was picked, when the input held several
    warnings: list[str] = field(default_factory=list)  # what the shards of a sharded run lack


def records_files(path: Path) -> list[Path]:
    """A records file, or every records file of a run directory (at its top, else below it)."""
    if path.is_file():
        return [path]
    if path.is_dir():
        # Top level first: a stored baseline keeps older versions below it, in history/.
        found = sorted(path.glob("*.jsonl")) or sorted(
            p
            for p in path.rglob("*.jsonl")
            if not any(part.endswith(_SIDE_SUFFIXES) for part in p.relative_to(path).parts[:-1])
        )
        if not found:
            raise UsageError(f"{path}: no records file (*.jsonl) in this directory")
        return found
    raise UsageError(f"{path}: no such records file or run directory")


def records_file(path: Path) -> Path:
    """The one records file of PATH; a UsageError when a directory holds several."""
    found = records_files(path)
    if len(found) > 1:
        names = ", ".join(str(p.relative_to(path)) for p in found[:3])
        more = " ..." if len(found) > 3 else ""
        raise UsageError(f"{path}: {len(found)} records files ({names}{more}); name one of them")
    return found[0]


def runs_in(records: Sequence[dict[str, Any]]) -> list[str]:
    """Run ids in the order their last record was written (the latest last)."""
    last: dict[str, int] = {}
    for i, record in enumerate(records):
        last[str(identity.run_id(record))] = i
    return sorted(last, key=last.__getitem__)


def load_run(path: Path, run_ids: Sequence[str] = ()) -> Run:
    """The current cell records of PATH (a torn last line and malformed records are skipped,
    hlbench.records.shape), of the runs in `run_ids` (or all of them with "all"); with none given
    and several runs present, of the latest run, saying so in `note`."""
    written: list[dict[str, Any]] = []
    for file in records_files(path):
        written += read_usable(file).records
    # current over all the files: the shards of one run share its run id, and a cell two of them
    # ran must count once
    records = identity.current_records(written)
    if not records:
        raise UsageError(f"{path}: holds no cell records")
    present = runs_in(records)
    picked, note = _pick(path, present, run_ids)
    chosen = [r for r in records if str(identity.run_id(r)) in picked]
    warnings = shard_notes(r for r in written if str(identity.run_id(r)) in picked)
    return Run(path, chosen, [r for r in present if r in picked], note, warnings)


def _pick(path: Path, present: list[str], asked: Sequence[str]) -> tuple[set[str], str]:
    if ALL_RUNS in asked:
        return set(present), ""
    if asked:
        wanted = [r for r in asked if r in present]
        if wanted:
            return set(wanted), ""
        if len(present) == 1:  # a one-run input (a stored baseline) is used as it is
            return set(present), ""
        raise UsageError(
            f"{path}: holds no run {', '.join(asked)}; its runs are {_listed(present)}"
        )
    if len(present) == 1:
        return set(present), ""
    note = (
        f"{path} holds {len(present)} runs ({_listed(present)}); using the latest, "
        f"{present[-1]} (choose with --run-id ID, or pool them with --run-id all)"
    )
    return {present[-1]}, note


def _listed(run_ids: list[str], limit: int = 4) -> str:
    shown = ", ".join(run_ids[:limit])
    return shown + (f" and {len(run_ids) - limit} more" if len(run_ids) > limit else "")


def split_runs(run: Run) -> list[list[dict[str, Any]]]:
    """A loaded input's records, one list per run id (A/A runs for `--calibrate`)."""
    return [[r for r in run.records if str(identity.run_id(r)) == rid] for rid in run.run_ids]
