"""Parent side of a run: one fresh worker process per cell and repeat, a timeout, and a record for
every outcome, appended as it happens so that an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import os
import queue
import signal
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hlbench.errors import UsageError
from hlbench.records import append_record
from hlbench.suite import Suite
from hlbench.sweep.launch import Rendezvous
from hlbench.sweep.outcome import Placement, task_record
from hlbench.sweep.plan import RunOptions, Task
from hlbench.sweep.zygote import Zygotes, mode

# Runs one task on the given GPU (--devices) or where its cell says; stops when the event is set.
RunOne = Callable[[Task, str | None, threading.Event | None], None]


class Interrupted(Exception):
    """The user (SIGINT) or the system (SIGTERM) stopped the run; the records file is resumable."""


class RecordsWriteError(Exception):
    """A record could not be appended (a full disk, a file made read-only): the run stops there.
    The message is one line naming the file and the OS reason; the records before it are intact
    (a torn last line is what `--resume` repairs)."""


def check_results_path(records_path: Path) -> None:
    """Before any cell runs: the records file's directory and the logs beside it exist (made here)
    and the file can be opened for append; else a UsageError naming the path and the OS reason.
    A records file that did not exist is not left behind (it appears with the first record)."""
    logs_dir = records_path.with_suffix(".logs")
    for directory in (records_path.parent, logs_dir):
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(
                f"{directory}: cannot create the results directory: {_reason(exc)}"
            ) from None
    existed = records_path.exists()
    try:
        with open(records_path, "a", encoding="utf-8"):
            pass
        if not existed:
            records_path.unlink()
    except OSError as exc:
        raise UsageError(f"{records_path}: cannot write records: {_reason(exc)}") from None


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + f"-{os.getpid() % 10000:04d}"


def run_tasks(suite: Suite, tasks: list[Task], options: RunOptions) -> list[dict[str, Any]]:
    """Run each task and append its record; raises Interrupted on SIGINT/SIGTERM between or during
    cells, RecordsWriteError when a record cannot be appended (UsageError before any cell runs when
    the records file's directory cannot be made or written: `check_results_path`).

    The node whose process is rank 0 (node 0; with rdzv_backend c10d whichever torchrun chose)
    writes the cell's record; the others write `kind: follower` records saying how their ranks
    ended. Raw telemetry samples go to <run-id>.telemetry/, profiler traces to
    <run-id>.profile/<cell_hash>-r<repeat>/ (see RunOptions).
    """
    options = options.with_suite_defaults(suite)
    check_results_path(options.records_path)
    rendezvous = Rendezvous.from_launcher(suite.config.launcher, options.node_rank)
    records: list[dict[str, Any]] = []
    # one pre-imported worker per backend for single-process cells (not with --devices, whose
    # workers each see another GPU)
    logs = options.records_path.with_suffix(".logs")
    zygotes = Zygotes(logs, forced=mode() == "on") if _preimport(options) else None
    # parallel cells: one writer of the records file and the progress bar at a time
    lock = threading.Lock()

    def run_one(task: Task, gpu: str | None, cancel: threading.Event | None) -> None:
        with lock:
            options.on_start(task)
        placement = Placement(rendezvous, gpu, cancel, zygotes)
        record = task_record(suite, task, options, placement)
        with lock:
            try:
                append_record(options.records_path, record)
            except OSError as exc:
                raise RecordsWriteError(
                    f"{options.records_path}: cannot append a record: {_reason(exc)}; the run "
                    "stops here"
                ) from None
            records.append(record)
            options.on_record(task, record)

    stop_signals = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.signal(signum, _raise_interrupt) for signum in stop_signals}
    try:
        if options.devices:
            _run_parallel(tasks, options.devices, run_one)
        else:
            for task in tasks:
                run_one(task, None, None)
    except KeyboardInterrupt:
        raise Interrupted() from None
    finally:
        if zygotes is not None:
            zygotes.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return records


def _preimport(options: RunOptions) -> bool:
    return mode() != "off" and not options.devices


def _run_parallel(tasks: list[Task], devices: Sequence[str], run_one: RunOne) -> None:
    """--devices: independent cells at once, one per GPU; a task waits for a free GPU. On Ctrl-C
    every running group is killed (its record is not written, so --resume runs it again)."""
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
