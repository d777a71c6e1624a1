"""What a run will do: its tasks (every cell and repeat without an `ok` record yet) and the options
that travel with it from the command to each task's processes and files."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hlbench.cell import Cell
from hlbench.errors import UsageError
from hlbench.records import read_records
from hlbench.suite import Suite
from hlbench.telemetry.collect import TelemetryConfig


@dataclass(frozen=True)
class Task:
    cell: Cell
    repeat: int

    @property
    def label(self) -> str:
        if self.cell.measurement.repeats == 1:
            return self.cell.id
        return f"{self.cell.id}#{self.repeat}"

    @property
    def key(self) -> str:
        """The name of this task's files (log, telemetry samples, profile traces)."""
        return f"{self.cell.hash}-r{self.repeat}"


def plan(suite: Suite, done: set[tuple[str, int]]) -> list[Task]:
    """Every (cell, repeat) of the suite without an `ok` record in `done`, interleaved: every
    cell's repeat 0, then every cell's repeat 1, ... A slow drift of the machine (a neighbour, heat,
    clocks) then spreads over all cells' repeats instead of landing on the cells that ran last, and
    each cell's repeats sample the whole span of the run (compare's test is over repeats)."""
    return [
        Task(cell.for_repeat(r), r)  # with measurement.seeds: repeat r trains with seed r's
        for r in range(suite.config.measurement.repeats)
        for cell in suite.cells
        if (cell.hash, r) not in done
    ]


def completed(records_path: Path, suite: Suite | None = None) -> set[tuple[str, int]]:
    """(cell hash, repeat) pairs already `ok` in a records file; repairs a torn last line first.
    With `suite`: a UsageError (before any repair) when the file holds another suite's records."""
    if suite is not None:
        check_same_suite(records_path, read_records(records_path), suite)
    records = [r for r in read_records(records_path, repair=True) if isinstance(r, dict)]
    return {
        (r["cell_hash"], r["repeat"])
        for r in records
        if r.get("status") == "ok"
        and isinstance(r.get("cell_hash"), str)
        and isinstance(r.get("repeat"), int)
    }


def check_same_suite(records_path: Path, records: list[Any], suite: Suite) -> None:
    """Every record that names its suite names this one: the same name and the same file content
    (sha256), else a UsageError saying which differs."""
    for record in records:
        if not isinstance(record, dict):
            continue
        name, sha = record.get("suite"), record.get("suite_sha256")
        if name is not None and name != suite.name:
            raise UsageError(
                f"--resume {records_path}: its records are of suite {_short(name)}, not "
                f"{suite.name!r}; resume a records file of this suite, or run without --resume"
            )
        if sha is not None and sha != suite.sha256:
            raise UsageError(
                f"--resume {records_path}: its records are of another version of suite "
                f"{suite.name!r} (sha256 {str(sha)[:12]}…, this file's {suite.sha256[:12]}…); "
                "run without --resume to start a new records file"
            )


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def ignore_start(task: Task) -> None:
    """The default `on_start`: nothing to show."""


def ignore_record(task: Task, record: dict[str, Any]) -> None:
    """The default `on_record`: nothing to show."""


@dataclass(frozen=True)
class RunOptions:
    """How the tasks of one run are run and where their files go.

    `telemetry` and `profile` left None take the suite's settings (`with_suite_defaults`).
    `devices`: GPU ids (CUDA_VISIBLE_DEVICES entries) to run single-device cells on concurrently,
    one cell per GPU. `node_rank`: this machine's rank for a suite with a multi-node launcher.
    `shard`: the `shard` section of every record when the run is one shard of a sharded run
    (hlbench.sweep.shard).
    `on_start` and `on_record` are called once per task, one call at a time (progress display).
    """

    records_path: Path
    run_id: str
    telemetry: TelemetryConfig | None = None
    profile: bool | None = None
    devices: tuple[str, ...] | None = None
    node_rank: int = 0
    shard: dict[str, int] | None = None
    on_start: Callable[[Task], None] = ignore_start
    on_record: Callable[[Task, dict[str, Any]], None] = ignore_record

    def with_suite_defaults(self, suite: Suite) -> RunOptions:
        """These options with the suite's telemetry and profiling settings where none was given."""
        telemetry = self.telemetry
        if telemetry is None:
            telemetry = TelemetryConfig(**suite.config.telemetry.model_dump())
        profile = suite.config.profile if self.profile is None else self.profile
        return dataclasses.replace(self, telemetry=telemetry, profile=profile)

    @property
    def logs_dir(self) -> Path:
        """Worker logs: <run-id>.logs/ beside the records file."""
        return self.records_path.with_suffix(".logs")

    def log_path(self, task: Task) -> Path:
        return self.logs_dir / f"{task.key}.log"

    def samples_path(self, task: Task) -> Path:
        """The raw telemetry samples: <run-id>.telemetry/."""
        return self.logs_dir.with_suffix(".telemetry") / f"{task.key}.csv"

    def profile_dir(self, task: Task) -> Path | None:
        """Profiler traces: <run-id>.profile/<cell_hash>-r<repeat>/; None when profiling is off."""
        return self.logs_dir.with_suffix(".profile") / task.key if self.profile else None
