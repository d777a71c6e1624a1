"""The runner: every outcome becomes a record, a failing cell never stops the suite, runs resume."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from hlbench.records import SCHEMA_VERSION, read_records
from tests.helpers import run_cli, suite_yaml

FAULT_SUITE = suite_yaml(
    name="faults",
    backends=["fault"],
    workloads=[{"model": "gpt", "size": "tiny", "seq_len": 8, "batch_size": 60}],
    axes={"accumulation": [1, 2, 3, 4, 5, 6]},
    measurement={"warmup_steps": 1, "steps": 2, "windows": 2, "timeout_s": 8, "eval_batches": 1},
    device=None,
)
FAULTS = {"ga2": "hang", "ga3": "kill", "ga4": "oom", "ga5": "raise", "ga6": "exit"}


def _records(results: Path) -> list[dict]:
    (path,) = results.glob("*/*.jsonl")
    return read_records(path)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_every_fault_is_recorded_and_the_suite_goes_on(write_suite, fault_env, tmp_path):
    env = {**fault_env, "HLBENCH_TEST_FAULTS": json.dumps(FAULTS)}
    proc = run_cli(
        "run",
        str(write_suite(FAULT_SUITE)),
        "--quiet",
        "--results-dir",
        "results",
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 1, proc.stderr  # some cells failed; all were recorded
    by_k = {r["cell"]["axes"]["accumulation"]: r for r in _records(tmp_path / "results")}
    assert sorted(by_k) == [1, 2, 3, 4, 5, 6]
    assert by_k[1]["status"] == "ok" and by_k[1]["metrics"]["tokens_per_s"] > 0
    assert by_k[2]["status"] == "timeout" and "timeout_s=8" in by_k[2]["reason"]
    assert by_k[3]["status"] == "crashed" and by_k[3]["signal"] == "SIGKILL"
    assert by_k[4]["status"] == "oom" and "80 GiB" in by_k[4]["reason"]
    assert by_k[5]["status"] == "error" and by_k[5]["error"]["type"] == "RuntimeError"
    assert any("simulated failure" in line for line in by_k[5]["error"]["traceback_tail"])
    assert by_k[6]["status"] == "crashed" and by_k[6]["exit_code"] == 3
    # The hung worker and the child it started were both killed with the process group.
    worker_pid, grandchild_pid = map(int, (tmp_path / "pids").read_text().split())
    assert not _alive(worker_pid) and not _alive(grandchild_pid)
    # Failed records carry no measurements that statistics could pick up.
    assert all(by_k[k]["metrics"] is None for k in (2, 3, 4, 5, 6))
    assert "timeout" in proc.stdout and "crashed" in proc.stdout  # the summary table


def test_record_schema_and_environment(write_suite, fault_env, tmp_path):
    proc = run_cli(
        "run",
        str(write_suite(FAULT_SUITE)),
        "--quiet",
        "--only",
        "*/ga1/*",
        cwd=tmp_path,
        env=fault_env,
    )
    assert proc.returncode == 0, proc.stderr
    (record,) = _records(tmp_path / "results")
    assert record["schema_version"] == SCHEMA_VERSION
    for key in (
        "run_id",
        "suite",
        "suite_sha256",
        "cell_id",
        "cell_hash",
        "repeat",
        "cell",
        "status",
        "timing",
        "metrics",
        "loss",
        "memory",
        "env",
        "telemetry",
        "started_at",
    ):
        assert key in record, key
    host = record["env"]["host"]
    for key in (
        "hostname",
        "cpu_model",
        "cpu_logical_cores",
        "python",
        "hlbench_version",
        "hlbench_git",
    ):
        assert host[key] is not None or key == "hlbench_git", key
    assert record["env"]["framework"]["framework"] == "fault"
    timing = record["timing"]
    assert len(timing["warmup_step_times_s"]) == 1 and timing["steps_measured"] == 4
    assert [len(w) for w in timing["window_step_times_s"]] == [2, 2]
    assert record["loss"]["entropy_floor_nats"] > 0
    assert record["loss"]["excess_eval_loss_nats"] == pytest.approx(
        1.0 - record["loss"]["entropy_floor_nats"]
    )
    assert record["memory"]["host_peak_rss_bytes"] > 0


def test_time_budget_cuts_windows_and_says_so(write_suite, fault_env, tmp_path):
    suite = FAULT_SUITE.replace("timeout_s: 8", "timeout_s: 60, budget_s: 0.25").replace(
        "steps: 2", "steps: 10"
    )
    env = {**fault_env, "HLBENCH_TEST_STEP_SLEEP_S": "0.1"}
    proc = run_cli(
        "run", str(write_suite(suite)), "--quiet", "--only", "*/ga1/*", cwd=tmp_path, env=env
    )
    assert proc.returncode == 0, proc.stderr
    (record,) = _records(tmp_path / "results")
    assert record["timing"]["budget_hit"] is True
    assert 1 <= record["timing"]["steps_measured"] < record["timing"]["steps_planned"] == 20
    assert "time budget hit" in proc.stdout


def _start_run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "hlbench", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_records(results: Path, n: int, timeout_s: float = 60) -> Path:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        files = list(results.glob("*/*.jsonl"))
        if files and len(files[0].read_bytes().splitlines()) >= n:
            return files[0]
        time.sleep(0.05)
    raise AssertionError(f"fewer than {n} records after {timeout_s} s")


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_run_resumes_without_loss_or_duplicates(
    write_suite, fault_env, tmp_path, stop_signal
):
    suite = write_suite(
        FAULT_SUITE.replace("[1, 2, 3, 4, 5, 6]", "[1, 2, 3, 4, 5]").replace(
            "timeout_s: 8", "timeout_s: 60"
        )
    )
    env = {
        **fault_env,
        "HLBENCH_TEST_STEP_SLEEP_S": "0.2",
    }  # ~1 s per cell, so the signal lands mid-run
    proc = _start_run(["run", str(suite), "--quiet"], tmp_path, env)
    records_path = _wait_for_records(tmp_path / "results", 2)
    workers = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(stop_signal)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "--resume" in err
    assert not any(_alive(w.pid) for w in workers)  # no orphaned worker
    first = read_records(records_path)
    assert 2 <= len(first) < 5

    # A kill during a write leaves a torn last line; resume repairs it and keeps every earlier
    # record.
    with open(records_path, "ab") as f:
        f.write(b'{"schema_version": 1, "cell_hash": "torn')
    resumed = run_cli(
        "run", str(suite), "--quiet", "--resume", str(records_path), cwd=tmp_path, env=fault_env
    )
    assert resumed.returncode == 0, resumed.stderr
    final = read_records(records_path)
    assert final[: len(first)] == first
    assert sorted(r["cell"]["axes"]["accumulation"] for r in final if r["status"] == "ok") == [
        1,
        2,
        3,
        4,
        5,
    ]
    assert len(final) == 5 and len({r["run_id"] for r in final}) == 1
    assert records_path.with_name(records_path.name + ".torn").exists()

    again = run_cli(
        "run", str(suite), "--quiet", "--resume", str(records_path), cwd=tmp_path, env=fault_env
    )
    assert again.returncode == 0 and "nothing to run" in again.stdout
    assert len(read_records(records_path)) == 5


def test_resume_reruns_failed_cells_only(write_suite, fault_env, tmp_path):
    suite = write_suite(FAULT_SUITE.replace("[1, 2, 3, 4, 5, 6]", "[1, 5]"))
    failing = {**fault_env, "HLBENCH_TEST_FAULTS": json.dumps({"ga5": "raise"})}
    assert run_cli("run", str(suite), "--quiet", cwd=tmp_path, env=failing).returncode == 1
    (records_path,) = (tmp_path / "results").glob("*/*.jsonl")
    fixed = run_cli(
        "run", str(suite), "--quiet", "--resume", str(records_path), cwd=tmp_path, env=fault_env
    )
    assert fixed.returncode == 0, fixed.stderr
    statuses = [
        (r["cell"]["axes"]["accumulation"], r["status"]) for r in read_records(records_path)
    ]
    assert statuses == [(1, "ok"), (5, "error"), (5, "ok")]


def test_repeats_are_separate_workers_and_records(write_suite, fault_env, tmp_path):
    suite = FAULT_SUITE.replace("timeout_s: 8", "timeout_s: 60, repeats: 2")
    proc = run_cli(
        "run", str(write_suite(suite)), "--quiet", "--only", "*/ga1/*", cwd=tmp_path, env=fault_env
    )
    assert proc.returncode == 0, proc.stderr
    records = _records(tmp_path / "results")
    assert [r["repeat"] for r in records] == [0, 1]
    assert records[0]["env"]["framework"]["pid"] != records[1]["env"]["framework"]["pid"]


def test_missing_framework_is_a_usage_error(write_suite, tmp_path, monkeypatch):
    import dataclasses

    from hlbench.cli import main
    from tests import fault_backend

    monkeypatch.setenv("HLBENCH_BACKENDS", "fault=tests.fault_backend:SPEC")
    monkeypatch.setattr(
        fault_backend, "SPEC", dataclasses.replace(fault_backend.SPEC, framework="no_such_pkg")
    )
    assert main(["run", str(write_suite(FAULT_SUITE)), "--results-dir", str(tmp_path / "r")]) == 2
    assert not (tmp_path / "r").exists()
