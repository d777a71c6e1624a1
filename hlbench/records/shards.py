"""Whether the shard files of a run add up to the run (hlbench.sweep.shard writes them): every shard
of it present, every shard's cells recorded, and no cell run by two shards.

A run cut into N shards is read as one run from the files of its shards (`report`, `table` and
`compare` take the run's directory). What the files cannot show by themselves is said as notes,
one line each, which the readers print as warnings and the report repeats: a shard with no record
here (a task that never started, a file not synced back), a shard with fewer cells recorded than it
owns (still running, or stopped), and a cell two shards both ran (shards that split different cell
lists; the record read last is the current one, by the usual rule of hlbench.records.identity).
"""

from __future__ import annotations

import itertools
import sys
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TextIO

from hlbench.records import identity

Record = identity.Record
MAX_LISTED = 5  # notes of one kind per run; a hostile or badly broken set of files stays readable


@dataclass
class _RunShards:
    """What the records of one run say about its shards."""

    # (index, count) -> the (cell hash, repeat) pairs recorded, and the cells and repeats it owns
    recorded: dict[tuple[int, int], set[tuple[str, int]]] = field(
        default_factory=lambda: defaultdict(set)
    )
    owned: dict[tuple[int, int], tuple[int, int]] = field(default_factory=dict)

    def add(self, shard: tuple[int, int, int | None], task: tuple[str, int], repeats: Any) -> None:
        index, count, cells = shard
        self.recorded[(index, count)].add(task)
        if cells is not None and isinstance(repeats, int) and repeats > 0:
            self.owned[(index, count)] = (cells, repeats)

    def notes(self, run: str) -> list[str]:
        counts = sorted({count for _, count in self.recorded})
        notes = []
        if len(counts) > 1:
            notes.append(
                f"run {run} mixes shards cut {' and '.join(map(str, counts))} ways (files of "
                "two launches under one run id?); the shards of one run are all cut alike"
            )
        for count in counts:
            present = {index for index, c in self.recorded if c == count}
            # lazily: a record's count can be huge, the records present are not
            missing = (i for i in range(count) if i not in present)
            shown = list(itertools.islice(missing, MAX_LISTED))
            notes += [f"shard {i}/{count} of run {run} not found" for i in shown]
            more = count - len(present) - len(shown)
            if more > 0:
                notes.append(f"... and {more} more shards of run {run} not found")
        short = [
            (shard, len(tasks), self.owned[shard])
            for shard, tasks in sorted(self.recorded.items())
            if shard in self.owned and len(tasks) < self.owned[shard][0] * self.owned[shard][1]
        ]
        notes += [
            f"shard {index}/{count} of run {run} has records of {n} of its {cells * repeats} cell "
            f"runs ({cells} cells × {repeats} repeats; still running, or stopped: continue it "
            "with hlbench run SUITE --resume ITS_FILE)"
            for (index, count), n, (cells, repeats) in short[:MAX_LISTED]
        ]
        return notes


def shard_notes(records: Iterable[Record]) -> list[str]:
    """The notes (see the module doc) for a set of cell records, any files and runs mixed; empty
    when no record is of a sharded run or its shards add up."""
    runs: dict[str, _RunShards] = {}
    ran_by: dict[tuple[str, str], set[tuple[int, int]]] = defaultdict(set)
    names: dict[tuple[str, str], str] = {}
    for record in records:
        shard, cell_hash = identity.shard(record), identity.cell_hash(record)
        if shard is None or cell_hash is None or identity.kind(record) != "cell":
            continue
        run = str(identity.run_id(record))
        repeats = identity.lookup(record, "cell", "measurement", "repeats")
        task = (cell_hash, identity.repeat(record))
        runs.setdefault(run, _RunShards()).add(shard, task, repeats)
        ran_by[(run, cell_hash)].add(shard[:2])
        names[(run, cell_hash)] = str(identity.cell_id(record) or cell_hash)
    notes = [note for run, shards in runs.items() for note in shards.notes(run)]
    return notes + _doubled(ran_by, names)


def shard_warnings(records: Iterable[Record], err: TextIO | None = None) -> list[str]:
    """shard_notes, each also printed as a warning line on `err` (stderr)."""
    notes = shard_notes(records)
    for note in notes:
        print(f"hlbench: warning: {note}", file=err or sys.stderr)
    return notes


def _doubled(
    ran_by: dict[tuple[str, str], set[tuple[int, int]]], names: dict[tuple[str, str], str]
) -> list[str]:
    doubled = sorted((key, sorted(shards)) for key, shards in ran_by.items() if len(shards) > 1)
    notes = [
        f"cell {names[(run, cell_hash)]} of run {run} was run by "
        f"{' and '.join(f'shard {i}/{n}' for i, n in shards)} (the record read last is used; "
        "did the shards split different cell lists? give every shard the same suite and --only)"
        for (run, cell_hash), shards in doubled[:MAX_LISTED]
    ]
    if len(doubled) > MAX_LISTED:
        notes.append(f"... and {len(doubled) - MAX_LISTED} more cells run by two shards")
    return notes
