"""One task's record: start the cell's processes (with telemetry beside them), wait for them under
the cell's timeout, and turn however they ended (a result, a skip, a timeout, a failure) into the
fields of its record."""

from __future__ import annotations

import json
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hlbench.backends import get_spec
from hlbench.env import host_environment
from hlbench.handoff import CELL_FILE, PROFILE_DIR_ENV, RESULT_FILE
from hlbench.records import SCHEMA_VERSION
from hlbench.suite import Suite
from hlbench.sweep.blame import group_failure, rank_results
from hlbench.sweep.launch import (
    Fork,
    GroupTimeout,
    ProcessGroup,
    Rendezvous,
    commands,
    local_gpus,
    too_few_gpus,
)
from hlbench.sweep.plan import RunOptions, Task
from hlbench.sweep.zygote import Zygotes
from hlbench.telemetry.collect import Collector


@dataclass(frozen=True)
class Placement:
    """Where a task's processes run: the rendezvous of a data-parallel cell, and with --devices the
    one GPU a single-device worker may see (CUDA_VISIBLE_DEVICES, so it is cuda:0 inside the
    worker)."""

    rendezvous: Rendezvous = Rendezvous()
    gpu: str | None = None
    cancel: threading.Event | None = None  # set when the run is interrupted (parallel cells)
    # pre-imported workers (hlbench.sweep.zygote); None: every worker is a fresh interpreter
    zygotes: Zygotes | None = None


def task_record(
    suite: Suite, task: Task, options: RunOptions, placement: Placement
) -> dict[str, Any]:
    """The whole record of one task: what it is, then what running (or not running) it gave."""
    record = base_record(suite, task, options.run_id)
    if options.shard is not None:  # which shard of a sharded run (hlbench.sweep.shard)
        record["shard"] = dict(options.shard)
    outcome = task_outcome(task, options, placement)
    record["env"]["framework"] = outcome.pop("env_framework", None)
    record.update(outcome)
    if record.get("kind") == "follower":  # only how this node's ranks ended (results.load skips it)
        record["node_rank"] = options.node_rank
    return record


def base_record(suite: Suite, task: Task, run_id: str) -> dict[str, Any]:
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
        # "forked" from a pre-imported worker (hlbench.sweep.zygote) or "spawned" as a fresh
        # interpreter: a forked worker's host RSS counts only the import pages it touches itself
        "worker_start": None,
        "log_path": None,  # the worker's stdout and stderr
        "timing": None,
        "metrics": None,
        "loss": None,
        "memory": None,
        "backend_info": None,
        "telemetry": None,  # filled by the telemetry samplers (NVML, host) when present
        "profile": None,  # the profiling pass's section when profiling is on (hlbench.profiling)
        # data-parallel cells: strategy, world size, per-rank figures (hlbench.worker.ranks)
        "distributed": None,
        "env": {"host": host_environment(), "framework": None},
    }


def task_outcome(task: Task, options: RunOptions, placement: Placement) -> dict[str, Any]:
    """Everything the record learns from running (or not running) the task."""
    spec = get_spec(task.cell.backend)
    reason = spec.unsupported_reason_for(task.cell) or too_few_gpus(task.cell)
    if reason:
        return {"status": "skipped", "reason": reason}
    log_path = options.log_path(task)
    start_s = time.perf_counter()
    outcome = _spawn(task, options, placement)
    outcome["worker_wall_s"] = time.perf_counter() - start_s
    outcome["log_path"] = str(log_path)
    if placement.gpu is not None:
        outcome["cuda_visible_device"] = placement.gpu  # --devices: the GPU this worker was given
    return outcome


def _spawn(task: Task, options: RunOptions, placement: Placement) -> dict[str, Any]:
    """The task's outcome, with the telemetry section when sampling is on."""
    cell, telemetry = task.cell, options.telemetry
    outcome: dict[str, Any] | None = None
    collector: Collector | None = None
    worker_start: str | None = None

    def started(pids: list[int], forked: bool) -> None:
        nonlocal collector, worker_start
        worker_start = "forked" if forked else "spawned"
        if telemetry is not None and telemetry.enabled:
            gpu = placement.gpu
            gpus = [int(gpu)] if gpu is not None and gpu.isdigit() else local_gpus(cell)
            collector = Collector(
                cell.device, pids, telemetry, tree=cell.launch is not None, gpus=gpus
            )

    try:
        outcome = _wait_for_worker(task, options, placement, started)
        outcome["worker_start"] = worker_start
        return outcome
    finally:
        if collector is not None:  # also for timeouts and crashes: the samples show what happened
            section = collector.finish(outcome, options.samples_path(task))
            if outcome is not None:
                outcome["telemetry"] = section


def _wait_for_worker(
    task: Task,
    options: RunOptions,
    placement: Placement,
    started: Callable[[list[int], bool], None],
) -> dict[str, Any]:
    """Hand the cell over in a fresh directory, start its processes, wait for them as one group."""
    cell, log_path = task.cell, options.log_path(task)
    timeout_s = cell.measurement.timeout_s
    # the same on every node (run ids differ per node)
    group_id = f"hlbench-{cell.hash}-r{task.repeat}"
    with tempfile.TemporaryDirectory(prefix="hlbench-") as tmp:
        cell_file, result_file = Path(tmp, CELL_FILE), Path(tmp, RESULT_FILE)
        cell_file.write_text(json.dumps(cell.to_dict()))
        env = _worker_env(options, task)
        if placement.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = placement.gpu
        log_path.write_bytes(b"")  # a fresh log per attempt; the processes append to it
        cmds = commands(
            cell,
            cell_file,
            result_file,
            placement.rendezvous,
            group_id,
            log_path.with_suffix(".ranks"),
        )
        group = ProcessGroup(cmds, log_path, env, _forker(task, placement, cell_file, result_file))
        try:
            started(group.pids, group.forked)
            codes = group.wait(timeout_s, cancel=placement.cancel)
        except BaseException as exc:  # a timeout, or Ctrl-C / SIGTERM even while telemetry starts
            group.kill()
            if not isinstance(exc, GroupTimeout):
                raise
            return _timed_out(task, len(group.pids))
        ok = all(c == 0 for c in codes)
        if result_file.exists() and ok:
            result = json.loads(result_file.read_text())
            framework_env = result.pop("framework_env", None)
            return {**result, "env_framework": framework_env}
        if cell.launch is not None and cell.launch.nnodes > 1 and ok:  # rank 0 ran elsewhere
            return {
                "status": "ok",
                "kind": "follower",
                "reason": "this node's ranks finished; the "
                "cell's figures are in the records of the node that ran rank 0",
            }
        reported = rank_results(result_file) if cell.launch is not None else {}
    return group_failure(
        cell,
        codes,
        group.ended_alone,
        reported,
        log_path.read_text(errors="replace"),
        placement.rendezvous,
        group.memory.oom_kill_evidence(),
    )


def _forker(task: Task, placement: Placement, cell_file: Path, result_file: Path) -> Fork | None:
    """How a single-process cell's worker is forked from its backend's zygote, or None (spawned):
    data-parallel cells keep their launchers; a --devices cell narrows CUDA_VISIBLE_DEVICES, which
    a process that imported the framework may have read already."""
    zygotes = placement.zygotes
    cell = task.cell
    if zygotes is None or cell.launch is not None or placement.gpu is not None:
        return None
    if not zygotes.applies(cell.device):
        return None
    files = [str(cell_file), str(result_file)]
    return lambda env, log_path: zygotes.start(cell.backend, files, env, log_path)


def _timed_out(task: Task, n_processes: int) -> dict[str, Any]:
    timeout_s = task.cell.measurement.timeout_s
    if n_processes == 1 and not task.cell.launch:
        what = "worker killed"
    else:
        what = "every process of the cell killed"
    return {"status": "timeout", "reason": f"no result within timeout_s={timeout_s:g} s; {what}"}


def _worker_env(options: RunOptions, task: Task) -> dict[str, str]:
    # The CPU peak for MFU is calibrated once per machine and cached in the user's cache
    # (hlbench.telemetry.calibration; HLBENCH_CACHE_DIR, inherited, moves it). Profiling is the
    # runner's decision, never inherited ("" means off).
    profile_dir = options.profile_dir(task)
    return {PROFILE_DIR_ENV: str(profile_dir.resolve()) if profile_dir is not None else ""}
