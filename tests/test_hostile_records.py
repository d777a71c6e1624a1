"""Hostile records files against every records tool (report, table, compare), run as a user runs
them (the CLI's main, in-process): where good records remain, exit 0 and a count of the skipped
malformed ones; else exit 2 with one line of at most 200 characters. Never a traceback."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hlbench.cli import main
from hlbench.records.shape import problem
from tests.helpers import STEADY, record

Mutation = Callable[[dict[str, Any]], Any]


def _set(path: str, value: Any) -> Mutation:
    """A good record with the field at the dotted `path` set to `value`."""

    def mutate(rec: dict[str, Any]) -> dict[str, Any]:
        *parents, last = path.split(".")
        target = rec
        for name in parents:
            target = target.setdefault(name, {})
        target[last] = value
        return rec

    return mutate


def _drop(name: str) -> Mutation:
    return lambda rec: {k: v for k, v in rec.items() if k != name}


# Records that are malformed: not objects, no readable schema_version, fields of the wrong type.
MALFORMED: dict[str, Mutation] = {
    "array": lambda rec: [1, 2, 3],
    "string": lambda rec: "a record",
    "number": lambda rec: 42,
    "null": lambda rec: None,
    "only-schema-version": lambda rec: {"schema_version": 1},
    "empty-object-with-version": lambda rec: {"schema_version": 1, "kind": "cell"},
    "no-schema-version": _drop("schema_version"),
    "schema-version-string": _set("schema_version", "1"),
    "schema-version-bool": _set("schema_version", True),
    "status-number": _set("status", 5),
    "status-unknown": _set("status", "splendid"),
    "cell-hash-list": _set("cell_hash", ["a"]),
    "kind-object": _set("kind", {"cell": 1}),
    "kind-unknown": _set("kind", "mystery"),
    "repeat-string": _set("repeat", "0"),
    "repeat-huge": _set("repeat", 10**30),
    "cell-list": _set("cell", []),
    "workload-string": _set("cell.workload", "gpt-small"),
    "seq-len-string": _set("cell.workload.seq_len", "128"),
    "axes-list": _set("cell.axes", ["fp32"]),
    "axis-value-object": _set("cell.axes.precision", {"nested": True}),
    "launch-without-strategy": _set("cell.launch", {"world_size": 2}),
    "windows-object": _set("timing.window_step_times_s", {"a": 1}),
    "windows-flat": _set("timing.window_step_times_s", [0.1, 0.2]),
    "windows-strings": _set("timing.window_step_times_s", [["0.1", "0.2"]]),
    "tokens-per-step-string": _set("metrics.tokens_per_step", "2048"),
    "tokens-per-step-beyond-float": _set("metrics.tokens_per_step", 10**400),
    "metrics-list": _set("metrics", [1, 2]),
    "loss-per-step-string": _set("loss.train_loss_per_step", "5.5"),
    "memory-list": _set("memory", [2**30]),
    "gpus-string": _set("env.framework.gpus", "H200"),
    "gpus-numbers": _set("env.framework.gpus", [1, 2]),
    "gpu-name-number": _set("env.framework.gpus", [{"name": 7}]),
    "driver-number": _set("env.framework.driver_version", 550),
    "env-string": _set("env", "linux"),
    "host-git-list": _set("env.host.hlbench_git", ["abc"]),
    "checks-object": lambda rec: {"schema_version": 1, "kind": "parity", "checks": {"a": 1}},
}


def _good() -> dict[str, Any]:
    return record(STEADY)


def _line(value: Any) -> str:
    return json.dumps(value) + "\n"


def _with_bad(name: str) -> str:
    """Two good records of two cells around one malformed record."""
    other = record(STEADY, cell_id="gpt-small/torch/bf16/ga1/none", cell_hash="b" * 16)
    return _line(_good()) + _line(MALFORMED[name](_good())) + _line(other)


def _only_bad(name: str) -> str:
    bad = MALFORMED[name]
    return _line(bad(_good())) + _line(bad(_good()))


# Files with nothing usable in them, beyond the malformed records above.
UNUSABLE: dict[str, bytes] = {
    "empty": b"",
    "blank-line": b"\n",
    "not-json": b"hello world\n",
    "damaged-middle-line": (_line(_good()) + "{torn\n" + _line(_good())).encode(),
    "deep-nesting": b"[" * 200_000 + b"]" * 200_000 + b"\n",
    "deep-object-nesting": b'{"a":' * 100_000 + b"1" + b"}" * 100_000 + b"\n",
    "latin-1": '{"schema_version": 1, "suite": "caf\xe9"}\n'.encode("latin-1"),
    "utf-16": _line(_good()).encode("utf-16"),
    "nul-bytes": b"\x00" * 64 + b"\n",
    "huge-integer-text": b'{"schema_version": 1, "repeat": ' + b"9" * 5000 + b"}\n",
    "other-schema-version": _line({**_good(), "schema_version": 99}).encode(),
    "unversioned-objects": b'{"hello": 1}\n{"world": 2}\n',
}

TOOLS = ("report", "table", "compare")


def _run(tool: str, path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Any:
    if tool == "report":
        argv = ["report", str(path), "-o", str(tmp_path / "report.md")]
    elif tool == "table":
        argv = ["table", str(path)]
    else:
        base = tmp_path / "base.jsonl"
        base.write_text(_line(_good()))
        argv = ["compare", str(base), str(path)]
    code = main(argv)
    return code, capsys.readouterr()


def _assert_one_line_error(code: int, err: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("hlbench: error: "), err
    assert len(lines[0]) <= 200 and "Traceback" not in err, lines[0]


def test_at_least_fifteen_cases_of_each_kind() -> None:
    assert len(MALFORMED) >= 15 and len(UNUSABLE) >= 10
    assert sum(tool == "report" for tool, _ in SKIP_CASES) >= 15
    assert problem(_good()) is None
    for name, bad in MALFORMED.items():
        assert problem(bad(_good())), name


# A report draws plots (about 2 s a file): every other case is enough for it.
SKIP_CASES = [
    (tool, name)
    for index, name in enumerate(sorted(MALFORMED))
    for tool in TOOLS
    if tool != "report" or index % 2 == 0
]


@pytest.mark.parametrize("tool, name", SKIP_CASES)
def test_malformed_record_is_skipped_with_a_count(
    tool: str, name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "run.jsonl"
    path.write_text(_with_bad(name))
    code, out = _run(tool, path, tmp_path, capsys)
    # compare: one run per side is too few for a timing verdict, so "inconclusive" (3)
    assert code == (3 if tool == "compare" else 0), out.err
    warnings = [line for line in out.err.splitlines() if "hlbench: warning" in line]
    assert len(warnings) == 1 and "skipped 1 malformed record in" in warnings[0], out.err
    assert "line 2: " in warnings[0] and len(warnings[0]) <= 200, warnings[0]
    assert "Traceback" not in out.err
    if tool == "report":  # the report says so too
        text = (tmp_path / "report.md").read_text()
        assert "- **Skipped:** skipped 1 malformed record in run.jsonl: line 2: " in text


@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_only_malformed_records_is_one_line_exit_2(
    tool: str, name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "run.jsonl"
    path.write_text(_only_bad(name))
    code, out = _run(tool, path, tmp_path, capsys)
    _assert_one_line_error(code, out.err)
    assert not (tmp_path / "report.md").exists()


@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize("name", sorted(UNUSABLE))
def test_unusable_file_is_one_line_exit_2(
    tool: str, name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "run.jsonl"
    path.write_bytes(UNUSABLE[name])
    code, out = _run(tool, path, tmp_path, capsys)
    _assert_one_line_error(code, out.err)


@pytest.mark.parametrize("tool", TOOLS)
def test_hostile_but_well_formed_values_are_read(
    tool: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Non-finite figures, a samples path out of the run's directory, a 1 MB string: well-formed,
    # read without a skip and without a traceback.
    rec = _good()
    hostile = copy.deepcopy(rec)
    hostile.update(repeat=1, reason="x" * 2**20, run_id="r")
    hostile["metrics"]["tokens_per_s"] = float("inf")
    hostile["timing"]["window_step_times_s"] = [[float("nan"), 0.1, float("inf")], [None, 0.2]]
    hostile["telemetry"] = {"samples_path": "../../../../etc/passwd", "derived": {}}
    path = tmp_path / "run.jsonl"
    path.write_text(_line(rec) + _line(hostile))
    code, out = _run(tool, path, tmp_path, capsys)
    assert code in (0, 1, 3), out.err
    assert "malformed" not in out.err and "Traceback" not in out.err


@pytest.mark.parametrize("name", ["array", "only-schema-version", "windows-flat", "gpus-string"])
def test_baseline_save_skips_malformed_records_or_refuses(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base_dir = tmp_path / "baselines"
    usable, unusable = tmp_path / "usable.jsonl", tmp_path / "unusable.jsonl"
    usable.write_text(_with_bad(name))
    unusable.write_text(_only_bad(name))
    save = ["baseline", "save", "--name", "b", "--dir", str(base_dir)]
    assert main([*save, str(usable)]) == 0
    err = capsys.readouterr().err
    assert "skipped 1 malformed record in" in err and "Traceback" not in err
    stored = (base_dir / "b" / "records.jsonl").read_text().splitlines()
    assert all(problem(json.loads(line)) is None for line in stored) and len(stored) == 2
    for argv in ([*save, str(unusable)], ["baseline", "name", str(unusable)]):
        code = main(argv)
        _assert_one_line_error(code, capsys.readouterr().err)


@pytest.mark.parametrize(
    "meta",
    [
        "[1, 2]",
        '{"environment": "linux", "saved_at": "../../escape"}',
        '{"environment": {"gpu_models": 3}, "cells": 7}',
        "[" * 100_000,
    ],
)
def test_baseline_show_survives_a_damaged_baseline_json(
    meta: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base_dir = tmp_path / "baselines"
    records = tmp_path / "run.jsonl"
    records.write_text(_line(_good()))
    save = ["baseline", "save", str(records), "--name", "b", "--dir", str(base_dir)]
    assert main(save) == 0
    (base_dir / "b" / "baseline.json").write_text(meta)
    assert main(["baseline", "show", "b", "--dir", str(base_dir)]) == 0
    assert main(save) == 0  # the damaged version moves to history/, under a safe name
    assert sorted(p.name for p in (base_dir / "b" / "history").iterdir()) == ["previous"]
    assert not (tmp_path / "escape").exists()
    assert "Traceback" not in capsys.readouterr().err
