"""Shards: a suite's cells split over the tasks of a cluster's job array, one run from many files.

Shard I of N (0-based, as Slurm's `--array=0-N-1` and Kubernetes' JOB_COMPLETION_INDEX count)
runs the cells whose position in the suite's cells sorted by hash is I modulo N. The split depends
only on the set of cell hashes, never on the order the suite lists them, so every task of an array
computes the same split on its own; a cell's repeats travel with it (a shard owns cells, not
tasks), so a cell's spread over repeats is measured on one machine. Dealing the sorted hashes out
round-robin keeps the shards' cell counts within one of each other.

Every shard of a run shares one run id (given, or derived from the launch: Slurm's array job id, or
HLBENCH_LAUNCH_ID, plus the suite's hash) and writes its own file,
`<results>/<suite>/<run-id>/shard-I-of-N.jsonl`, so the run's directory is the run. A shard whose
file exists already (a requeued array task, a replaced pod) continues it, as `--resume` does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hlbench.errors import UsageError

if TYPE_CHECKING:  # `hlbench --help` registers the flags; the cells load only when a run starts
    from hlbench.cell import Cell

# Set by the user or a manifest to one value shared by every shard of one launch (Kubernetes: the
# Job's uid, through the downward API); Slurm's array job id serves without it.
LAUNCH_ID_ENV = "HLBENCH_LAUNCH_ID"
SLURM_TASK_ID, SLURM_TASK_COUNT = "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT"
SLURM_TASK_MIN, SLURM_TASK_STEP = "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_STEP"
SLURM_JOB_ID = "SLURM_ARRAY_JOB_ID"
K8S_INDEX = "JOB_COMPLETION_INDEX"

# A run id names a directory and files: no separators, no leading dot, bounded length.
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_SHARD_FILE = re.compile(r"shard-(\d+)-of-(\d+)\.jsonl")
_SPEC = re.compile(r"(\d+)/(\d+)")
_MAX_SHARDS = 100_000


@dataclass(frozen=True)
class Shard:
    index: int  # 0-based
    count: int
    source: str = "--shard"  # where the index came from, for messages

    @property
    def label(self) -> str:
        return f"shard {self.index}/{self.count}"

    @property
    def file_name(self) -> str:
        return f"shard-{self.index}-of-{self.count}.jsonl"

    def record_field(self, n_cells: int) -> dict[str, int]:
        """The `shard` section of this shard's records: which shard, and how many cells it owns
        (readers tell a missing or unfinished shard from it)."""
        return {"index": self.index, "count": self.count, "cells": n_cells}


def parse_shard(text: str, environ: Mapping[str, str]) -> Shard:
    """`I/N`, `auto` (a Slurm array's variables) or `auto/N` (N given: Kubernetes' Indexed Job,
    whose pods know only their index); a UsageError naming what is wrong."""
    if text == "auto" or text.startswith("auto/"):
        count = None
        if text != "auto":
            count = _count(text, text.removeprefix("auto/"))
        return _from_environment(text, count, environ)
    match = _SPEC.fullmatch(text)
    if not match:
        raise UsageError(
            f"--shard {text!r}: expected I/N (0-based: 0/4 … 3/4), auto (a Slurm job array) or "
            "auto/N (a Kubernetes Indexed Job of N completions)"
        )
    count = _count(text, match.group(2))
    return _checked(text, int(match.group(1)), count, "--shard")


def _count(text: str, digits: str) -> int:
    if not digits.isdigit() or not 1 <= int(digits) <= _MAX_SHARDS:
        raise UsageError(f"--shard {text!r}: the shard count must be 1 … {_MAX_SHARDS}")
    return int(digits)


def _checked(text: str, index: int, count: int, source: str) -> Shard:
    if not 0 <= index < count:
        raise UsageError(
            f"--shard {text}: index {index} is out of range; shards are numbered from 0 to "
            f"{count - 1} (0-based)"
        )
    return Shard(index, count, source)


def _from_environment(text: str, count: int | None, environ: Mapping[str, str]) -> Shard:
    if SLURM_TASK_ID in environ:
        return _from_slurm(text, count, environ)
    if K8S_INDEX in environ:
        if count is None:
            raise UsageError(
                f"--shard auto: {K8S_INDEX} gives this pod's index but not the shard count; "
                "give it as --shard auto/N (N: the Job's completions)"
            )
        index = _env_int(environ, K8S_INDEX)
        return _checked(f"auto/{count} ({K8S_INDEX}={index})", index, count, K8S_INDEX)
    raise UsageError(
        f"--shard {text}: no scheduler variables here ({SLURM_TASK_ID} of a Slurm job array, "
        f"{K8S_INDEX} of a Kubernetes Indexed Job); give the shard as --shard I/N"
    )


def _from_slurm(text: str, count: int | None, environ: Mapping[str, str]) -> Shard:
    """The array task's position in its array: --array=1-8 or 0-14:2 give shards 0 … 7 too."""
    task_id = _env_int(environ, SLURM_TASK_ID)
    n_tasks = _env_int(environ, SLURM_TASK_COUNT)
    first = _env_int(environ, SLURM_TASK_MIN, default=0)
    step = _env_int(environ, SLURM_TASK_STEP, default=1) or 1
    offset, misplaced = divmod(task_id - first, step)
    if misplaced or not 0 <= offset < n_tasks:
        raise UsageError(
            f"--shard auto: array task {task_id} is not in an evenly spaced array of {n_tasks} "
            f"task(s) from {first}; submit the array as --array=0-{n_tasks - 1}"
        )
    if count is not None and count != n_tasks:
        raise UsageError(
            f"--shard {text}: the Slurm array has {n_tasks} task(s) ({SLURM_TASK_COUNT}), "
            f"not {count}; give --shard auto"
        )
    if not 1 <= n_tasks <= _MAX_SHARDS:
        raise UsageError(f"--shard auto: {SLURM_TASK_COUNT}={n_tasks} is out of range")
    return Shard(offset, n_tasks, SLURM_TASK_ID)


def _env_int(environ: Mapping[str, str], name: str, default: int | None = None) -> int:
    value = environ.get(name)
    if value is None and default is not None:
        return default
    if value is None or not value.strip().lstrip("-").isdigit():
        raise UsageError(f"--shard auto: {name}={value!r} is not an integer")
    return int(value)


def partition(cells: Sequence[Cell], shard: Shard) -> list[Cell]:
    """The cells shard `shard` runs, in the suite's order; a UsageError when there are fewer cells
    than shards (some shard would own none, and its missing file could not be told from a lost
    one)."""
    if shard.count > len(cells):
        raise UsageError(
            f"{shard.label}: the suite has {len(cells)} cell(s) to run; "
            f"use at most {len(cells)} shard(s), so that none is empty"
        )
    ranked = sorted(cells, key=lambda cell: (cell.hash, cell.id))
    mine = {id(cell) for cell in ranked[shard.index :: shard.count]}
    return [cell for cell in cells if id(cell) in mine]


def check_run_id(run_id: str, flag: str = "--run-id") -> str:
    if not _RUN_ID.fullmatch(run_id):
        raise UsageError(
            f"{flag} {run_id[:60]!r}: a run id is 1-100 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (it names the run's directory)"
        )
    return run_id


def launch_run_id(suite_sha256: str, environ: Mapping[str, str]) -> str | None:
    """The run id every shard of one launch derives alike: the launch's id and the suite's hash
    (the same launch id with an edited suite is another run); None outside a known launch."""
    launch = environ.get(LAUNCH_ID_ENV, "").strip()
    if launch:
        return check_run_id(f"{launch}-{suite_sha256[:12]}", f"{LAUNCH_ID_ENV}:")
    job = environ.get(SLURM_JOB_ID, "").strip()
    if job:
        return check_run_id(f"slurm{job}-{suite_sha256[:12]}", f"{SLURM_JOB_ID}:")
    return None


def shard_run_id(given: str | None, suite_sha256: str, environ: Mapping[str, str]) -> str:
    """The run id of a shard: --run-id, else the launch's; a UsageError without either, since
    shards that each made up their own id would be as many runs."""
    if given:
        return check_run_id(given)
    derived = launch_run_id(suite_sha256, environ)
    if derived is None:
        raise UsageError(
            "--shard: the shards of one run must share its run id: give --run-id ID (the same to "
            f"every shard), or run in a Slurm job array ({SLURM_JOB_ID}) or with {LAUNCH_ID_ENV} "
            "set to an id of the launch"
        )
    return derived


def records_path(results_dir: Path, suite_name: str, run_id: str, shard: Shard | None) -> Path:
    """A shard's file in the run's directory; without shards, <run-id>.jsonl as ever."""
    if shard is None:
        return results_dir / suite_name / f"{run_id}.jsonl"
    return results_dir / suite_name / run_id / shard.file_name


def shard_of_file(path: Path) -> Shard | None:
    """The shard a records file holds, by its name (shard-I-of-N.jsonl); None for another name."""
    match = _SHARD_FILE.fullmatch(path.name)
    if not match:
        return None
    index, count = int(match.group(1)), int(match.group(2))
    return Shard(index, count, str(path)) if 0 <= index < count else None


def resumed_shard(path: Path, given: Shard | None) -> Shard | None:
    """--resume FILE's shard (from its name), checked against --shard when both are given."""
    named = shard_of_file(path)
    if (
        given is not None
        and named is not None
        and (given.index, given.count)
        != (
            named.index,
            named.count,
        )
    ):
        raise UsageError(
            f"--resume {path}: this file is {named.label}, but --shard says {given.label} "
            "(drop --shard: a shard file names its shard)"
        )
    if given is not None and named is None:
        raise UsageError(
            f"--resume {path}: not a shard's records file (shard-I-of-N.jsonl); resume it "
            "without --shard, or name the shard's file"
        )
    return named or given


def summary(shard: Shard, n_mine: int, n_total: int, run_id: str | None) -> str:
    """One line for --dry-run and the start of a run: which shard, how many cells, which run."""
    run = f" of run {run_id}" if run_id else ""
    return f"{shard.label}{run}: {n_mine} of {n_total} cell(s) (from {shard.source})"
