"""The shape of a record: what every records tool (report, table, compare, baseline) checks before
it reads one, so that the accessors (identity, fields, memory, environment) only ever see the types
they expect.

`SPEC` names only the fields the tools read, with their JSON types; other fields are not checked.
Any field may be null or absent unless its name ends in "!" (required). A record that is not a JSON
object, or whose fields have the wrong type, is malformed: `read_usable` skips it and says so on
stderr (a count and the first lines), and refuses the file (one line) when nothing usable is left.
A record without a readable `schema_version` is malformed too, and a file where no record has one
is not an hlbench records file: every tool refuses it alike (which version a tool reads is its own
check: hlbench.records.jsonl.check_schema).

Messages name the field and the type found, never the value: a hostile file cannot make them long.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from hlbench import __version__
from hlbench.errors import UsageError
from hlbench.records.identity import KINDS
from hlbench.records.jsonl import SCHEMA_VERSION, STATUSES, check_schema, read_records

# Leaves: "str", "int", "num" (int or float, finite or not), "bool", "object" (any JSON object),
# "scalars" (an object of strings, numbers, booleans and nulls), "any". A trailing "?" on a list's
# element spec allows null elements. A dict is an object of those keys; a one-element list an
# array of that element.
Spec = Any

_GPU = {"name": "str"}
_ENV = {
    "host": {"cpu_model": "str", "hlbench_version": "str", "hlbench_git": {"commit": "str"}},
    "framework": {
        "framework": "str",
        "driver_version": "str",
        "torch_version": "str",
        "tensorflow_version": "str",
        "cuda_version": "str",
        "cudnn_version": "str",
        "gpus": [_GPU],
    },
}
_CELL = {
    "workload": {
        "name": "str",
        "spec": {"model": "str", "size": "str"},
        "global_batch": "int",
        "micro_batch": "int",
        "seq_len": "int",
        "hold": "str",
    },
    "backend": "str",
    "device": "str",
    "axes": "scalars",
    "launch": {"strategy!": "str", "world_size!": "int", "nnodes": "int", "nproc_per_node": "int"},
    "init_seed": "int",
}
_CHECK = {
    "name": "str",
    "passed": "bool",
    "rel_diff": "num",
    "tolerance": "num",
    "detail": "str",
    "values": "object",
}

_CURVE_KEYS = ("step", "tokens", "train_time_s", "eval_s", "eval_loss", "excess_nats")

SPEC: dict[str, Spec] = {
    "kind": "str",
    "status": "str",
    "reason": "str",
    "run_id": "str",
    "suite": "str",
    "cell_id": "str",
    "cell_hash": "str",
    "repeat": "int",
    "started_at": "str",
    "shard": {"index!": "int", "count!": "int", "cells": "int"},
    "worker_wall_s": "num",
    "worker_start": "str",
    "cell": _CELL,
    "timing": {
        "window_step_times_s": [["num?"]],
        "window_monotonic_s": [["num"]],
        "steps_measured": "int",
        "steps_planned": "int",
        "budget_hit": "bool",
        "startup_s": "num",
        "technique_events": ["object"],
    },
    "metrics": {
        "tokens_per_step": "num",
        "tokens_per_s": "num",
        "mfu": "num",
        "mfu_dtype": "num",
        "mfu_flag": "str",
    },
    "loss": {"train_loss_per_step": ["num?"], "final_train_loss": "num", "eval_loss": "num"},
    "memory": {"framework_memory_reason": "str", "host_peak_rss_bytes": "num"},
    "telemetry": {"derived": "object", "samples_path": "str", "to_target": "object"},
    "quality": {
        "mode": "str",
        "target": {"kind": "str", "value": "num"},
        "reached": "bool",
        "stopped_by": "str",
        "time_to_target_s": "num",
        "steps_to_target": "num",
        "tokens_to_target": "num",
        "eval_s_total": "num",
        "best_excess_nats": "num",
        "final_excess_nats": "num",
        "eval_curve": {key: ["num?"] for key in _CURVE_KEYS},
    },
    "health": {
        "grad_norm_per_step": ["num?"],
        "grad_norm_median": "num",
        "grad_norm_max": "num",
        "clipped_fraction": "num",
        "nonfinite_grad_steps": ["int"],
        "nonfinite_loss_steps": ["int"],
        "loss_spike_steps": ["int"],
    },
    "backend_info": {
        "device": "str",
        "flops_per_token": "num",
        "n_params": "int",
        "pruning": "object",
        "loss_scale_final": "num",
        "overflow_skipped_steps": "int",
    },
    "profile": {
        "phase_shares": "object",
        "category_shares": "object",
        "step_s": "num",
        "trace_path": "str",
    },
    "env": _ENV,
    # parity records
    "workload": "str",
    "precision": "str",
    "backends": ["str"],
    "passed": "bool",
    "checks": [_CHECK],
}

_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
_WANTED = {
    "str": "a string",
    "int": "an integer",
    "num": "a number",
    "bool": "a boolean",
    "object": "an object",
    "scalars": "an object of scalars",
}
_INT_LIMIT = 2**63  # what NumPy's int64 columns hold
_FLOAT_LIMIT = 2**1023  # a larger integer does not convert to a float


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "a number"
    return _JSON_TYPES.get(type(value), "a value")


def _leaf_ok(spec: str, value: Any) -> bool:
    if spec == "any":
        return True
    if spec == "str":
        return isinstance(value, str)
    if spec == "bool":
        return isinstance(value, bool)
    if spec in ("object", "scalars"):
        return isinstance(value, dict) and (
            spec == "object"
            or all(
                v is None or isinstance(v, (str, bool)) or _leaf_ok("num", v)
                for v in value.values()
            )
        )
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if spec == "int":
        return isinstance(value, int) and -_INT_LIMIT < value < _INT_LIMIT
    return isinstance(value, float) or -_FLOAT_LIMIT < value < _FLOAT_LIMIT


def _compile(spec: Spec) -> tuple[Any, ...]:
    """A spec as nodes: ("obj", ((key, required, node), ...)), ("list", node, nullable) or
    ("leaf", name): no string handling left for the per-record check."""
    if isinstance(spec, dict):
        fields = tuple((n.rstrip("!"), n.endswith("!"), _compile(sub)) for n, sub in spec.items())
        return ("obj", fields)
    if isinstance(spec, list):
        nullable = isinstance(spec[0], str) and spec[0].endswith("?")
        return ("list", _compile(spec[0].rstrip("?") if nullable else spec[0]), nullable)
    return ("leaf", spec)


def _problem(node: tuple[Any, ...], value: Any, where: str) -> str | None:
    """Where `value` departs from the spec `node`, in a few words; None when it conforms."""
    if node[0] == "obj":
        if type(value) is not dict:
            return f"{where}: expected an object, got {_json_type(value)}"
        for key, required, sub in node[1]:
            field = value.get(key)
            if field is None:
                if required:
                    return f"{where}.{key}: missing" if where else f"{key}: missing"
                continue
            if sub[0] == "leaf" and type(field) in _FAST.get(sub[1], ()):
                continue  # the common case, without building the field's name
            found = _problem(sub, field, f"{where}.{key}" if where else key)
            if found:
                return found
        return None
    if node[0] == "list":
        if type(value) is not list:
            return f"{where}: expected an array, got {_json_type(value)}"
        element, nullable = node[1], node[2]
        if element == ("leaf", "num") and all(type(item) is float for item in value):
            return None  # the common case (step times, losses), checked fast
        for index, item in enumerate(value):
            if item is None and nullable:
                continue
            found = _problem(element, item, f"{where}[{index}]")
            if found:
                return found
        return None
    if _leaf_ok(node[1], value):
        return None
    return f"{where}: expected {_WANTED[node[1]]}, got {_json_type(value)}"


# Types that always conform to a leaf (ints are range-checked, objects looked into: not here).
_FAST: dict[str, tuple[type, ...]] = {"str": (str,), "num": (float,), "bool": (bool,), "any": ()}
_SPEC = _compile(SPEC)


def problem(record: Any) -> str | None:
    """Why `record` is malformed (a few words naming the field); None when its shape is right."""
    if not isinstance(record, dict):
        return f"not a JSON object but {_json_type(record)}"
    if not has_version(record):
        return "no schema_version"
    found = _problem(_SPEC, record, "")
    if found:
        return found
    kind = record.get("kind", "cell")
    if kind not in KINDS:
        return f"unknown record kind (expected {', '.join(KINDS)})"
    if kind == "cell":
        for name in ("cell_hash", "status"):
            if record.get(name) is None:
                return f"{name}: missing"
        if record["status"] not in STATUSES:
            return f"status: not one of {', '.join(STATUSES)}"
    return None


def has_version(record: Any) -> bool:
    """Whether `record` is an object with a readable (integer) schema version."""
    version = record.get("schema_version") if isinstance(record, dict) else None
    return isinstance(version, int) and not isinstance(version, bool)


@dataclass(frozen=True)
class Usable:
    """A file's well-formed records, with their line numbers, and the malformed ones left out."""

    lines: list[int]
    records: list[dict[str, Any]]
    skipped: list[tuple[int, str]]  # (line, why)


def check_records(path: Path, records: list[Any], this_version: bool = False) -> Usable:
    """`records` (a file's, in order) split into well-formed and malformed (see the module doc);
    with `this_version`, a record of another schema version is refused first (its shape may be
    another)."""
    lines: list[int] = []
    good: list[dict[str, Any]] = []
    skipped: list[tuple[int, str]] = []
    for line, record in enumerate(records, start=1):
        if this_version and has_version(record):
            check_schema(path, line, record)
        why = problem(record)
        if why:
            skipped.append((line, why))
        else:
            lines.append(line)
            good.append(record)
    return Usable(lines, good, skipped)


def skip_note(path: Path, skipped: list[tuple[int, str]], shown: int = 2) -> str:
    """'skipped 3 malformed records in FILE: line 4: ...; line 7: ...; ...', bounded in length."""
    noun = "record" if len(skipped) == 1 else "records"
    where = "; ".join(f"line {line}: {why[:80]}" for line, why in skipped[:shown])
    more = "; ..." if len(skipped) > shown else ""
    return f"skipped {len(skipped)} malformed {noun} in {_short(path)}: {where}{more}"


def _short(path: Path) -> str:
    text = str(path)
    return text if len(text) <= 80 else "..." + text[-77:]


def read_usable(path: Path, this_version: bool = False, err: TextIO | None = None) -> Usable:
    """A records file's well-formed records; malformed ones are skipped with a warning on `err`
    (stderr), and a file where nothing usable is left is refused with one line. `this_version`:
    see check_records."""
    records = read_records(path)
    usable = check_records(path, records, this_version)
    if usable.skipped:
        if not any(map(has_version, records)):
            raise UsageError(
                f"{_short(path)}: no schema_version in any record; not an hlbench records file "
                f"(hlbench {__version__} reads schema version {SCHEMA_VERSION})"
            )
        if not usable.records:
            first_line, why = usable.skipped[0]
            raise UsageError(
                f"{_short(path)}: no usable records ({len(usable.skipped)} malformed; line "
                f"{first_line}: {why[:80]})"
            )
        print(f"hlbench: warning: {skip_note(path, usable.skipped)}", file=err or sys.stderr)
    return usable
