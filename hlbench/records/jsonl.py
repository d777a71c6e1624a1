"""Records files: one JSON object per line (JSONL), appended and fsynced one at a time.

Append-only files survive a kill at any instant: at worst the last line is torn, and `read_records`
detects it (no trailing newline or unparsable JSON) and, with `repair=True`, cuts it off after
saving the torn bytes beside the file. A bad line anywhere else is not a torn write and is reported,
never dropped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hlbench import __version__
from hlbench.errors import UsageError

SCHEMA_VERSION = 1
STATUSES = ("ok", "skipped", "oom", "timeout", "error", "crashed")


def append_record(path: Path, record: dict[str, Any]) -> None:
    """Append one record and make it durable before returning."""
    line = json.dumps(record, separators=(",", ":"), allow_nan=True) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def read_records(path: Path, repair: bool = False) -> list[dict[str, Any]]:
    """All complete records of a JSONL file; a torn last line is cut off (repair) or ignored."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read records: {exc.strerror}") from None
    lines = data.split(b"\n")
    tail = lines.pop()  # the bytes after the last newline: b"" when the file ends cleanly
    records = []
    for number, line in enumerate(lines, start=1):
        try:
            records.append(json.loads(line.decode("utf-8")))  # JSON lines are UTF-8
        except (ValueError, RecursionError):  # RecursionError: nesting too deep to parse
            raise UsageError(
                f"{path}: line {number} is not a JSON record; the file is damaged"
            ) from None
    if tail:
        good_end = len(data) - len(tail)
        try:  # a whole record whose newline was not written yet still counts
            records.append(json.loads(tail.decode("utf-8")))
            torn = False
        except (ValueError, RecursionError):
            torn = True
        if repair:
            _repair_tail(path, good_end, tail, torn)
    return records


def _repair_tail(path: Path, good_end: int, tail: bytes, torn: bool) -> None:
    with open(path, "r+b") as f:
        if torn:
            # the torn bytes are kept for forensics, never re-read
            path.with_name(path.name + ".torn").write_bytes(tail)
            f.truncate(good_end)
        else:
            f.seek(0, os.SEEK_END)
            f.write(b"\n")
        f.flush()
        os.fsync(f.fileno())


def check_schema(path: Path, line: int, record: Any) -> None:
    """A one-line UsageError unless `record` is an object of this hlbench's schema version."""
    if not isinstance(record, dict):
        raise UsageError(f"{path}: line {line}: not a JSON object; not an hlbench records file")
    version = record.get("schema_version")
    if version == SCHEMA_VERSION:
        return
    if not isinstance(version, int):
        raise UsageError(
            f"{path}: line {line}: no schema_version; not an hlbench records file (hlbench "
            f"{__version__} reads schema version {SCHEMA_VERSION})"
        )
    hint = (
        "upgrade hlbench to read it"
        if version > SCHEMA_VERSION
        else "re-run the suite with this hlbench"
    )
    raise UsageError(
        f"{path}: line {line}: records schema version {version}; hlbench {__version__} reads only "
        f"version {SCHEMA_VERSION} ({hint})"
    )
