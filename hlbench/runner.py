"""Parent side of a run: one fresh worker process per cell and repeat, a timeout, and a record for
every outcome, appended as it happens so that an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from hlbench.backends import get_spec
from hlbench.cell import Cell
from hlbench.env import host_environment
from hlbench.records import SCHEMA_VERSION, append_record, read_records
from hlbench.suite import Suite
from hlbench.telemetry.collect import Collector, TelemetryConfig
from hlbench.profiling import PROFILE_DIR_ENV
from hlbench.telemetry.mfu import CALIBRATION_CACHE_ENV

LOG_TAIL_LINES = 20


class Interrupted(Exception):
    """The user (SIGINT) or the system (SIGTERM) stopped the run; the records file is resumable."""


@dataclass(frozen=True)
class Task:
    cell: Cell
    repeat: int

    @property
    def label(self) -> str:
        return self.cell.id if self.cell.measurement["repeats"] == 1 else f"{self.cell.id}#{self.repeat}"


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + f"-{os.getpid() % 10000:04d}"


def plan(suite: Suite, done: set[tuple[str, int]]) -> list[Task]:
    """Every (cell, repeat) of the suite without an `ok` record in `done`."""
    return [
        Task(cell, r)
        for r in range(suite.config.measurement.repeats)
        for cell in suite.cells
        if (cell.hash, r) not in done
    ]


def completed(records_path: Path) -> set[tuple[str, int]]:
    """(cell hash, repeat) pairs already `ok` in a records file; repairs a torn last line first."""
    records = read_records(records_path, repair=True)
    return {(r["cell_hash"], r["repeat"]) for r in records if r.get("status") == "ok"}


def run_tasks(
    suite: Suite,
    tasks: list[Task],
    records_path: Path,
    run_id: str,
    on_start: Callable[[Task], None] = lambda task: None,
    on_record: Callable[[Task, dict[str, Any]], None] = lambda task, record: None,
    telemetry: TelemetryConfig | None = None,
    profile: bool | None = None,
) -> list[dict[str, Any]]:
    """Run each task and append its record; raises Interrupted on SIGINT/SIGTERM between or during cells.

    `telemetry`: sampling settings (default: the suite's); raw samples go to <run-id>.telemetry/.
    `profile`: the profiling pass per cell (default: the suite's `profile`); traces go to
    <run-id>.profile/<cell_hash>-r<repeat>/.
    """
    logs_dir = records_path.with_suffix(".logs")
    logs_dir.mkdir(parents=True, exist_ok=True)
    if telemetry is None:
        telemetry = TelemetryConfig(**suite.config.telemetry.model_dump())
    if profile is None:
        profile = suite.config.profile

    records = []
    previous_term = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        for task in tasks:
            on_start(task)
            record = _base_record(suite, task, run_id)
            outcome = _outcome(task, logs_dir, telemetry, profile)
            record["env"]["framework"] = outcome.pop("env_framework", None)
            record.update(outcome)
            append_record(records_path, record)
            records.append(record)
            on_record(task, record)
    except KeyboardInterrupt:
        raise Interrupted() from None
    finally:
        signal.signal(signal.SIGTERM, previous_term)
    return records


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _base_record(suite: Suite, task: Task, run_id: str) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "suite": suite.name,
        "suite_path": str(suite.path),
        "suite_sha256": suite.sha256,
        "cell_id": task.cell.id,
        "cell_hash": task.cell.hash,
        "repeat": task.repeat,
        "cell": task.cell.to_dict(),
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "status": None,
        "reason": None,  # why a cell was skipped or failed, one line
        "error": None,  # type, message, traceback tail (error) or the worker log's tail (crashed)
        "signal": None,  # the signal that killed the worker (crashed)
        "exit_code": None,  # a worker's non-zero exit code when it left no result (crashed)
        "worker_wall_s": None,  # the worker process's whole life, import and startup included
        "log_path": None,  # the worker's stdout and stderr
        "timing": None,
        "metrics": None,
        "loss": None,
        "memory": None,
        "backend_info": None,
        "telemetry": None,  # filled by the telemetry samplers (NVML, host) when present
        "profile": None,  # the profiling pass's section when profiling is on (hlbench.profiling)
        "env": {"host": host_environment(), "framework": None},
    }


def _outcome(task: Task, logs_dir: Path, telemetry: TelemetryConfig, profile: bool = False) -> dict[str, Any]:
    """Everything the record learns from running (or not running) the task."""
    spec = get_spec(task.cell.backend)
    reason = spec.unsupported_reason_for(task.cell)
    if reason:
        return {"status": "skipped", "reason": reason}
    log_path = logs_dir / f"{task.cell.hash}-r{task.repeat}.log"
    samples_path = logs_dir.with_suffix(".telemetry") / f"{task.cell.hash}-r{task.repeat}.csv"
    start = time.perf_counter()
    profile_dir = logs_dir.with_suffix(".profile") / f"{task.cell.hash}-r{task.repeat}" if profile else None
    outcome = _spawn(task.cell, log_path, telemetry, samples_path, profile_dir)
    outcome["worker_wall_s"] = time.perf_counter() - start
    outcome["log_path"] = str(log_path)
    return outcome


def _spawn(cell: Cell, log_path: Path, telemetry: TelemetryConfig, samples_path: Path,
           profile_dir: Path | None = None) -> dict[str, Any]:
    outcome: dict[str, Any] | None = None
    collector: Collector | None = None

    def started(pid: int) -> None:
        nonlocal collector
        if telemetry.enabled:
            collector = Collector(cell.device, pid, telemetry)

    try:
        outcome = _wait_for_worker(cell, log_path, started, profile_dir)
        return outcome
    finally:
        if collector is not None:  # also for timeouts and crashes: the samples show what happened
            section = collector.finish(outcome, samples_path)
            if outcome is not None:
                outcome["telemetry"] = section


def _wait_for_worker(cell: Cell, log_path: Path, started: Callable[[int], None],
                     profile_dir: Path | None = None) -> dict[str, Any]:
    timeout_s = cell.measurement["timeout_s"]
    with tempfile.TemporaryDirectory(prefix="hlbench-") as tmp:
        cell_file, result_file = Path(tmp, "cell.json"), Path(tmp, "result.json")
        cell_file.write_text(json.dumps(cell.to_dict()))
        with open(log_path, "wb") as log:
            # A new session: the worker gets its own process group, which a timeout kills whole, and the
            # terminal's Ctrl-C reaches only the parent, which then stops the worker itself.
            proc = subprocess.Popen(
                [sys.executable, "-m", "hlbench.worker", str(cell_file), str(result_file)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                env=_worker_env(log_path, profile_dir),
            )
            try:
                started(proc.pid)
                returncode = proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                return {"status": "timeout", "reason": f"no result within timeout_s={timeout_s:g} s; worker killed"}
            except BaseException:
                _kill_group(proc)
                raise
        if result_file.exists() and returncode == 0:
            result = json.loads(result_file.read_text())
            framework_env = result.pop("framework_env", None)
            return {**result, "env_framework": framework_env}
    return _died(returncode, log_path)


def _worker_env(log_path: Path, profile_dir: Path | None) -> dict[str, str]:
    # one CPU GEMM calibration per (framework, precision) per run, shared by its workers (MFU)
    env = {**os.environ, CALIBRATION_CACHE_ENV: str(log_path.parent.with_suffix(".calibration.json"))}
    env.pop(PROFILE_DIR_ENV, None)  # profiling is the runner's decision, never inherited
    if profile_dir is not None:
        env[PROFILE_DIR_ENV] = str(profile_dir.resolve())
    return env


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # already gone
    proc.wait()


def _died(returncode: int, log_path: Path) -> dict[str, Any]:
    tail = log_path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
    if returncode < 0:
        name = signal.Signals(-returncode).name
        return {
            "status": "crashed",
            "reason": f"worker killed by {name}" + (" (the kernel's OOM killer sends SIGKILL)" if name == "SIGKILL" else ""),
            "signal": name,
            "error": {"type": "crash", "message": name, "traceback_tail": tail},
        }
    return {
        "status": "crashed",
        "reason": f"worker exited with code {returncode} without a result",
        "exit_code": returncode,
        "error": {"type": "crash", "message": f"exit code {returncode}", "traceback_tail": tail},
    }
