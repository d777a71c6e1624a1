"""Parent side of a run: one fresh worker process per cell and repeat, a timeout, and a record for
every outcome, appended as it happens so that an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from hlbench.backends import get_spec
from hlbench.cell import Cell
from hlbench.env import host_environment
from hlbench.handoff import CALIBRATION_CACHE_ENV, CELL_FILE, PROFILE_DIR_ENV, RESULT_FILE
from hlbench.run.blame import group_failure, rank_results
from hlbench.run.launch import GroupTimeout, ProcessGroup, Rendezvous, commands, local_gpus, too_few_gpus
from hlbench.records import SCHEMA_VERSION, append_record, read_records
from hlbench.suite import Suite
from hlbench.telemetry.collect import Collector, TelemetryConfig


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
    devices: list[str] | None = None,
    node_rank: int = 0,
) -> list[dict[str, Any]]:
    """Run each task and append its record; raises Interrupted on SIGINT/SIGTERM between or during cells.

    `devices`: GPU ids (CUDA_VISIBLE_DEVICES entries) to run single-device cells on concurrently, one
    cell per GPU. `node_rank`: this machine's rank for a suite with a multi-node launcher. The node
    whose process is rank 0 (node 0; with rdzv_backend c10d whichever torchrun chose) writes the cell's
    record; the others write `kind: follower` records saying how their ranks ended.

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

    rendezvous = Rendezvous.from_launcher(suite.config.launcher, node_rank)
    records: list[dict[str, Any]] = []
    lock = threading.Lock()  # parallel cells: one writer of the records file and the progress bar at a time

    def run_one(task: Task, gpu: str | None, cancel: threading.Event | None) -> None:
        with lock:
            on_start(task)
        record = _base_record(suite, task, run_id)
        outcome = _outcome(task, logs_dir, telemetry, profile, Placement(rendezvous, gpu, cancel))
        record["env"]["framework"] = outcome.pop("env_framework", None)
        record.update(outcome)
        if record.get("kind") == "follower":  # only how this node's ranks ended (results.load skips it)
            record["node_rank"] = node_rank
        with lock:
            append_record(records_path, record)
            records.append(record)
            on_record(task, record)

    previous_term = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        if devices:
            _run_parallel(tasks, devices, run_one)
        else:
            for task in tasks:
                run_one(task, None, None)
    except KeyboardInterrupt:
        raise Interrupted() from None
    finally:
        signal.signal(signal.SIGTERM, previous_term)
    return records


def _run_parallel(tasks: list[Task], devices: list[str],
                  run_one: Callable[[Task, str | None, threading.Event | None], None]) -> None:
    """--devices: independent cells at once, one per GPU; a task waits for a free GPU. On Ctrl-C every
    running group is killed (its record is not written, so --resume runs it again)."""
    free: queue.Queue[str] = queue.Queue()
    for device in devices:
        free.put(device)
    cancel = threading.Event()

    def job(task: Task) -> None:
        if cancel.is_set():
            return
        gpu = free.get()
        try:
            run_one(task, gpu, cancel)
        finally:
            free.put(gpu)

    with ThreadPoolExecutor(max_workers=len(devices), thread_name_prefix="hlbench-cell") as pool:
        futures = [pool.submit(job, task) for task in tasks]
        try:
            for future in as_completed(futures):
                future.result()
        except BaseException:
            cancel.set()
            for future in futures:
                future.cancel()
            raise


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
        "distributed": None,  # data-parallel cells: strategy, world size, per-rank figures (hlbench.worker.ranks)
        "env": {"host": host_environment(), "framework": None},
    }


@dataclass(frozen=True)
class Placement:
    """Where a task's processes run: the rendezvous of a data-parallel cell, and with --devices the one
    GPU a single-device worker may see (CUDA_VISIBLE_DEVICES, so it is cuda:0 inside the worker)."""

    rendezvous: Rendezvous = Rendezvous()
    gpu: str | None = None
    cancel: threading.Event | None = None  # set when the run is interrupted (parallel cells)


def _outcome(task: Task, logs_dir: Path, telemetry: TelemetryConfig, profile: bool = False,
             placement: Placement | None = None) -> dict[str, Any]:
    """Everything the record learns from running (or not running) the task."""
    placement = placement or Placement()
    spec = get_spec(task.cell.backend)
    reason = spec.unsupported_reason_for(task.cell) or too_few_gpus(task.cell)
    if reason:
        return {"status": "skipped", "reason": reason}
    log_path = logs_dir / f"{task.cell.hash}-r{task.repeat}.log"
    samples_path = logs_dir.with_suffix(".telemetry") / f"{task.cell.hash}-r{task.repeat}.csv"
    start = time.perf_counter()
    profile_dir = logs_dir.with_suffix(".profile") / f"{task.cell.hash}-r{task.repeat}" if profile else None
    group_id = f"hlbench-{task.cell.hash}-r{task.repeat}"  # the same on every node (run ids differ per node)
    outcome = _spawn(task.cell, log_path, telemetry, samples_path, profile_dir, placement, group_id)
    outcome["worker_wall_s"] = time.perf_counter() - start
    outcome["log_path"] = str(log_path)
    if placement.gpu is not None:
        outcome["cuda_visible_device"] = placement.gpu  # --devices: the GPU this worker was given
    return outcome


def _spawn(cell: Cell, log_path: Path, telemetry: TelemetryConfig, samples_path: Path,
           profile_dir: Path | None, placement: Placement, group_id: str) -> dict[str, Any]:
    outcome: dict[str, Any] | None = None
    collector: Collector | None = None

    def started(pids: list[int]) -> None:
        nonlocal collector
        if telemetry.enabled:
            gpus = [int(placement.gpu)] if placement.gpu is not None and placement.gpu.isdigit() else local_gpus(cell)
            collector = Collector(cell.device, pids, telemetry, tree=cell.launch is not None, gpus=gpus)

    try:
        outcome = _wait_for_worker(cell, log_path, started, profile_dir, placement, group_id)
        return outcome
    finally:
        if collector is not None:  # also for timeouts and crashes: the samples show what happened
            section = collector.finish(outcome, samples_path)
            if outcome is not None:
                outcome["telemetry"] = section


def _wait_for_worker(cell: Cell, log_path: Path, started: Callable[[list[int]], None],
                     profile_dir: Path | None, placement: Placement, group_id: str) -> dict[str, Any]:
    timeout_s = cell.measurement["timeout_s"]
    with tempfile.TemporaryDirectory(prefix="hlbench-") as tmp:
        cell_file, result_file = Path(tmp, CELL_FILE), Path(tmp, RESULT_FILE)
        cell_file.write_text(json.dumps(cell.to_dict()))
        env = _worker_env(log_path, profile_dir)
        if placement.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = placement.gpu
        log_path.write_bytes(b"")  # a fresh log per attempt; the processes append to it
        cmds = commands(cell, cell_file, result_file, placement.rendezvous, group_id, log_path.with_suffix(".ranks"))
        group = ProcessGroup(cmds, log_path, env)
        try:
            started(group.pids)
            codes = group.wait(timeout_s, cancel=placement.cancel)
        except BaseException as exc:  # a timeout, or Ctrl-C / SIGTERM even while telemetry starts
            group.kill()
            if not isinstance(exc, GroupTimeout):
                raise
            what = "worker killed" if len(group.pids) == 1 and not cell.launch else "every process of the cell killed"
            return {"status": "timeout", "reason": f"no result within timeout_s={timeout_s:g} s; {what}"}
        ok = all(c == 0 for c in codes)
        if result_file.exists() and ok:
            result = json.loads(result_file.read_text())
            framework_env = result.pop("framework_env", None)
            return {**result, "env_framework": framework_env}
        if cell.launch is not None and cell.launch["nnodes"] > 1 and ok:  # rank 0 ran on another node
            return {"status": "ok", "kind": "follower", "reason": "this node's ranks finished; the cell's "
                    "figures are in the records of the node that ran rank 0"}
        reported = rank_results(result_file) if cell.launch is not None else {}
    return group_failure(cell, codes, group.ended_alone, reported, log_path.read_text(errors="replace"),
                         placement.rendezvous)


def _worker_env(log_path: Path, profile_dir: Path | None) -> dict[str, str]:
    # one CPU GEMM calibration per (framework, precision) per run, shared by its workers (MFU)
    env = {CALIBRATION_CACHE_ENV: str(log_path.parent.with_suffix(".calibration.json"))}
    # profiling is the runner's decision, never inherited ("" means off)
    env[PROFILE_DIR_ENV] = str(profile_dir.resolve()) if profile_dir is not None else ""
    return env
