"""Interrupts at awkward moments, results paths that cannot be written, and --resume of the wrong
file: each is one clear line and the right exit status, never a traceback."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from hlbench.cli import main
from hlbench.records import append_record, read_records
from tests.helpers import run_cli, suite_yaml

ONE_CELL = suite_yaml(
    name="io",
    backends=["fault"],
    workloads=[{"model": "gpt", "size": "tiny", "seq_len": 8, "batch_size": 4}],
    axes={"accumulation": [1, 2]},
    measurement={"warmup_steps": 1, "steps": 2, "windows": 2, "timeout_s": 60, "eval_batches": 1},
    device=None,
)


def _start(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "hlbench", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_until(predicate, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"not reached within {timeout_s} s")


def _in_hlbench(pid: int) -> bool:
    """The process has begun the `run` command's own imports (pydantic's extension is mapped): it
    is inside `cli.main`, before the runner installed any handler."""
    try:
        return any("pydantic_core" in m.path for m in psutil.Process(pid).memory_maps())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _has_worker(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).children(recursive=True))
    except psutil.NoSuchProcess:
        return False


def _one_line_error(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("hlbench: error:")]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_signal_during_startup_exits_130_with_one_line(
    write_suite, fault_env, tmp_path, stop_signal
):
    suite = write_suite(ONE_CELL)
    proc = _start(["run", str(suite), "--quiet"], tmp_path, fault_env)
    _wait_until(lambda: _in_hlbench(proc.pid) or proc.poll() is not None)
    proc.send_signal(stop_signal)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert "--resume" not in err
    assert len(err.strip().splitlines()) <= 3, err
    assert not list((tmp_path / "results").glob("*/*.jsonl"))


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_signal_during_the_first_cell_gives_no_resume_hint(
    write_suite, fault_env, tmp_path, stop_signal
):
    suite = write_suite(ONE_CELL)
    env = {**fault_env, "HLBENCH_TEST_STEP_SLEEP_S": "2"}
    proc = _start(["run", str(suite), "--quiet"], tmp_path, env)
    _wait_until(lambda: _has_worker(proc.pid) or proc.poll() is not None)
    time.sleep(0.3)
    proc.send_signal(stop_signal)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
    assert "--resume" not in err and "nothing was recorded" in err, err
    assert f"hlbench run {suite}" in err
    assert not list((tmp_path / "results").glob("*/*.jsonl"))  # no records file, empty or not


def test_results_dir_under_a_regular_file(write_suite, fault_env, tmp_path):
    suite = write_suite(ONE_CELL)
    (tmp_path / "blocker").write_text("a file, not a directory")
    out = run_cli(
        "run", str(suite), "--quiet", "--results-dir", "blocker/results", cwd=tmp_path,
        env=fault_env,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    line = _one_line_error(out.stderr)
    assert "blocker/results/io" in line and "Not a directory" in line, line
    assert not _has_pidfile(tmp_path)  # no worker started


def test_results_dir_that_is_a_regular_file(write_suite, fault_env, tmp_path):
    suite = write_suite(ONE_CELL)
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "io").write_text("a file where the suite's directory goes")
    out = run_cli("run", str(suite), "--quiet", cwd=tmp_path, env=fault_env)
    assert out.returncode == 2, out.stderr
    line = _one_line_error(out.stderr)
    assert "results/io" in line and "cannot create" in line, line


def _has_pidfile(tmp_path: Path) -> bool:
    return (tmp_path / "pids").exists()


def test_read_only_results_dir(write_suite, fault_env, tmp_path):
    suite = write_suite(ONE_CELL)
    readonly = tmp_path / "results" / "io"
    readonly.mkdir(parents=True)
    readonly.chmod(0o555)
    try:
        if os.access(readonly, os.W_OK):
            pytest.skip("this user (root) may write into a read-only directory")
        out = run_cli("run", str(suite), "--quiet", cwd=tmp_path, env=fault_env)
    finally:
        readonly.chmod(0o755)
    assert out.returncode == 2, out.stderr
    line = _one_line_error(out.stderr)
    assert "results/io" in line and "Permission denied" in line, line


def test_unwritable_records_file_is_refused_before_any_cell(
    write_suite, fault_env, tmp_path, monkeypatch, capsys
):
    """A records file that cannot be opened for append (read-only, whatever the user): refused up
    front, in process with `open` made to fail as a read-only file system does."""
    import builtins

    suite = write_suite(ONE_CELL)
    real_open = builtins.open

    def read_only_open(file, mode="r", *args, **kwargs):
        if str(file).endswith(".jsonl") and "a" in mode:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(builtins, "open", read_only_open)
    assert main(["run", str(suite), "--quiet"]) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert ".jsonl" in line and "Read-only file system" in line, line
    assert not _has_pidfile(tmp_path)


def _disk_fills_after(n: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """append_record writes n records, then the disk is full: a torn line and ENOSPC."""
    from hlbench.sweep import runner

    written = []

    def append(path: Path, record: dict) -> None:
        if len(written) < n:
            written.append(record)
            append_record(path, record)
            return
        with open(path, "ab") as f:
            f.write(json.dumps(record).encode()[:40])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(runner, "append_record", append)


def test_full_disk_mid_run_stops_the_suite_resumably(
    write_suite, fault_env, tmp_path, monkeypatch, capsys
):
    suite = write_suite(ONE_CELL.replace("[1, 2]", "[1, 2, 4]"))
    monkeypatch.chdir(tmp_path)
    _disk_fills_after(1, monkeypatch)
    assert main(["run", str(suite), "--quiet"]) == 1
    line = _one_line_error(capsys.readouterr().err)
    (records_path,) = Path("results").glob("io/*.jsonl")
    assert line.startswith(f"hlbench: error: {records_path}: cannot append a record: No space")
    assert line.endswith(f"resume with: hlbench run {suite} --resume {records_path}"), line
    assert len(read_records(records_path)) == 1  # the torn line is not a record

    resumed = run_cli(
        "run", str(suite), "--quiet", "--resume", str(records_path), cwd=tmp_path, env=fault_env
    )
    assert resumed.returncode == 0, resumed.stderr
    final = read_records(records_path)
    assert sorted(r["cell"]["axes"]["accumulation"] for r in final) == [1, 2, 4]


def test_run_tasks_raises_records_write_error(write_suite, fault_env, tmp_path, monkeypatch):
    from hlbench.suite import load_suite
    from hlbench.sweep.plan import RunOptions, plan
    from hlbench.sweep.runner import RecordsWriteError, run_tasks

    suite = load_suite(write_suite(ONE_CELL))
    records_path = tmp_path / "results" / "io" / "run.jsonl"
    _disk_fills_after(0, monkeypatch)
    options = RunOptions(records_path=records_path, run_id="run")
    with pytest.raises(RecordsWriteError, match="No space left on device") as raised:
        run_tasks(suite, plan(suite, set()), options)
    assert "\n" not in str(raised.value)
    assert read_records(records_path, repair=True) == []


def _run_once(suite: Path, tmp_path: Path, env: dict[str, str]) -> Path:
    out = run_cli("run", str(suite), "--quiet", "--only", "*/ga1/*", cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    (records_path,) = (tmp_path / "results").glob("*/*.jsonl")
    return records_path


def test_resume_refuses_another_suites_records(write_suite, fault_env, tmp_path):
    records_path = _run_once(write_suite(ONE_CELL, "a.yaml"), tmp_path, fault_env)
    before = records_path.read_bytes()
    other = write_suite(ONE_CELL.replace("name: io", "name: other"), "b.yaml")
    out = run_cli(
        "run", str(other), "--quiet", "--resume", str(records_path), cwd=tmp_path, env=fault_env
    )
    assert out.returncode == 2, out.stderr
    line = _one_line_error(out.stderr)
    assert "suite 'io', not 'other'" in line, line
    assert records_path.read_bytes() == before


def test_resume_refuses_another_version_of_the_suite(write_suite, fault_env, tmp_path):
    suite = write_suite(ONE_CELL)
    records_path = _run_once(suite, tmp_path, fault_env)
    before = records_path.read_bytes()
    suite.write_text(ONE_CELL.replace("steps: 2", "steps: 3"))
    out = run_cli(
        "run", str(suite), "--quiet", "--resume", str(records_path), cwd=tmp_path, env=fault_env
    )
    assert out.returncode == 2, out.stderr
    line = _one_line_error(out.stderr)
    assert "another version of suite 'io'" in line, line
    assert records_path.read_bytes() == before


def test_resume_of_the_same_suite_still_runs_the_rest(write_suite, fault_env, tmp_path):
    suite = write_suite(ONE_CELL)
    records_path = _run_once(suite, tmp_path, fault_env)
    out = run_cli(
        "run", str(suite), "--quiet", "--resume", str(records_path), cwd=tmp_path, env=fault_env
    )
    assert out.returncode == 0, out.stderr
    assert len(read_records(records_path)) == 2
