"""`hlbench run SUITE`: train every cell of a suite in fresh worker processes, one record each."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from hlbench.api import check_frameworks, select_cells
from hlbench.backends import get_spec
from hlbench.commands import cluster, export, slurm
from hlbench.errors import UsageError
from hlbench.handoff import cuda_visible_devices

EXIT_OK, EXIT_FAILED_CELLS, EXIT_INTERRUPTED = 0, 1, 130
# --mlflow without a URI: the default store ($MLFLOW_TRACKING_URI, else ./mlruns)

EPILOG = """\
records: results/<suite>/<run-id>.jsonl, one JSON line per cell and repeat (see the README for the
fields); worker logs beside it in <run-id>.logs/. One shard of a sharded run (--shard I/N):
results/<suite>/<run-id>/shard-I-of-N.jsonl; report the run's directory.

workers: each cell and repeat runs in a process of its own. Single-process CPU cells are forked from
one pre-imported worker per framework (the import is paid once per run); HLBENCH_PREIMPORT=0 starts
each in a fresh interpreter, HLBENCH_PREIMPORT=1 forks GPU cells too (records say which:
worker_start).

exit status: 0 every cell ok or skipped; 1 some cell ended oom, timeout, error or crashed (its
record says why; the other cells still ran), or a record could not be written (the run stopped;
resume with --resume); 2 bad suite or arguments, a results path that cannot be made or written,
or a --resume file of another suite (nothing ran); 130 interrupted (resume with --resume once a
record was written).
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run a suite: one worker process per cell, records appended as JSONL",
        description="Validate SUITE, expand its matrix and train every cell in a fresh worker "
        "process.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_what_to_run(p)
    _add_how_to_run(p)
    cluster.add_arguments(p)
    p.set_defaults(func=cmd_run)


def _add_what_to_run(p: argparse.ArgumentParser) -> None:
    """The suite, the cells of it, and the records file they go to."""
    p.add_argument(
        "suite",
        type=Path,
        help="a shipped suite by name, e.g. smoke (hlbench suites lists them), or a YAML file",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="validate and list the cells; run nothing"
    )
    p.add_argument(
        "--resume",
        type=Path,
        metavar="FILE",
        help="append to FILE, running only the cells without an ok record in it",
    )
    p.add_argument(
        "--results-dir",
        type=Path,
        default=Path("results"),
        metavar="DIR",
        help="where new records files go (default: results)",
    )
    p.add_argument(
        "--only",
        metavar="GLOB",
        action="append",
        help="run only cells whose id matches GLOB (repeatable), e.g. 'gpt-*/torch/*/ga1/*'",
    )


def _add_how_to_run(p: argparse.ArgumentParser) -> None:
    """Output, sampling and profiling, placement on GPUs and nodes, the report at the end."""
    p.add_argument(
        "--quiet",
        action="store_true",
        help="no progress bar (for CI logs); the summary still prints",
    )
    p.add_argument(
        "--no-telemetry",
        action="store_true",
        help="no NVML/host sampling beside the workers (default: the suite's telemetry settings)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="a profiling pass per cell after its measured windows: phase breakdown, "
        "framework profiler traces in <run-id>.profile/ (default: the suite's `profile`)",
    )
    p.add_argument(
        "--devices",
        metavar="IDS",
        help="run single-device cells concurrently, one per GPU, e.g. 0,1,2,3: each "
        "worker sees only its GPU (CUDA_VISIBLE_DEVICES) and has its own telemetry; for "
        "the sweep's throughput (not with a suite `launcher:`, whose cells use the GPUs "
        "themselves)",
    )
    p.add_argument(
        "--node-rank",
        type=int,
        default=0,
        metavar="N",
        help="this machine's rank in a multi-node suite (launcher.nnodes > 1): run the "
        "same command on every node with 0 … nnodes-1; node 0 writes the cells' records "
        "(default: 0)",
    )
    p.add_argument(
        "--report",
        type=Path,
        metavar="MD",
        nargs="?",
        const=Path("auto"),
        help="write a markdown report of this run when it ends "
        "(default: beside the records, results/<suite>/<run-id>.md, outside the tracked "
        "reports/ folder)",
    )
    p.add_argument(
        "--mlflow",
        metavar="URI",
        nargs="?",
        const=export.DEFAULT_MLFLOW,
        help="export the records to MLflow when the run ends (as hlbench export --to mlflow; "
        "with --report, the report too): --mlflow for the local store ./mlruns (or "
        "$MLFLOW_TRACKING_URI), --mlflow=URI for a tracking server or another store",
    )


def cmd_run(args: argparse.Namespace) -> int:
    # Imported here so `hlbench --help` stays fast.
    from hlbench.sweep import runner
    from hlbench.sweep.plan import plan

    suite = _selected_suite(args)
    sharded = cluster.select_shard(args, suite, os.environ)
    devices = _check_placement(args, suite)
    if args.slurm is not None:
        return slurm.submit(args, suite)
    if args.dry_run:
        _print_cells(suite)
        if sharded:
            print(cluster.describe(sharded, cluster.dry_run_id(args, suite)))
        return EXIT_OK
    check_frameworks(str(args.suite), suite)
    if args.mlflow is not None:  # before anything runs, not after an hour of training
        from hlbench.export.to_mlflow import check_installed

        check_installed()
    records_path, run_id, done = _records_file(args, suite, sharded)
    tasks = plan(suite, done)
    if not tasks:
        print(f"nothing to run: every cell already has an ok record in {records_path}")
        return EXIT_OK
    runner.check_results_path(records_path)
    part = f", {cluster.describe(sharded, run_id)}" if sharded else ""
    print(
        f"hlbench: {len(tasks)} cell run(s) of suite {suite.name!r}{part} → {records_path}",
        file=sys.stderr,
    )
    try:
        records = _run(args, suite, tasks, records_path, run_id, devices, sharded)
    except runner.Interrupted:
        print(_interrupted(args.suite, records_path), file=sys.stderr)
        return EXIT_INTERRUPTED
    except runner.RecordsWriteError as exc:
        print(
            f"hlbench: error: {exc}, the records before it are kept; resume with: "
            f"hlbench run {args.suite} --resume {records_path}",
            file=sys.stderr,
        )
        return EXIT_FAILED_CELLS
    report = _summarize(args, suite.name, records, records_path, run_id, sharded)
    failed = [r for r in records if r["status"] not in ("ok", "skipped")]
    exported = export.after_run(args.mlflow, records_path, report)
    return EXIT_FAILED_CELLS if failed or not exported else EXIT_OK


def _interrupted(suite_path: Path, records_path: Path) -> str:
    """What to say on Ctrl-C: how to resume, or (no record written yet) how to start again."""
    try:
        recorded = records_path.stat().st_size > 0
    except OSError:
        recorded = False
    if recorded:
        return (
            f"hlbench: interrupted; records so far are in {records_path}\n"
            f"resume with: hlbench run {suite_path} --resume {records_path}"
        )
    return (
        "hlbench: interrupted before the first record; nothing was recorded\n"
        f"run it again with: hlbench run {suite_path}"
    )


def _selected_suite(args: argparse.Namespace) -> Any:
    """The suite, narrowed to the cells --only selects."""
    from hlbench.suite import load_suite
    from hlbench.suite.shipped import resolve

    return select_cells(load_suite(resolve(args.suite)), args.only, option="--only")


def _records_file(
    args: argparse.Namespace, suite: Any, sharded: cluster.Sharded | None
) -> tuple[Path, str, set[tuple[str, int]]]:
    """The records file, the run id and the (cell hash, repeat) pairs already ok: the --resume
    file (whose stem, or directory for a shard's file, is the run id it continues; it must hold
    this suite's records), else the run's file under --results-dir (cluster.new_records_file)."""
    from hlbench.sweep.plan import completed

    if args.resume and not args.run_id:
        records_path = args.resume
        if not records_path.is_file():
            raise UsageError(f"--resume {records_path}: no such records file")
        run_id = cluster.resumed_run_id(records_path)
        return records_path, run_id, completed(records_path, suite)
    return cluster.new_records_file(args, suite, sharded)


def _run(
    args: argparse.Namespace,
    suite: Any,
    tasks: list[Any],
    records_path: Path,
    run_id: str,
    devices: list[str] | None,
    sharded: cluster.Sharded | None,
) -> list[dict[str, Any]]:
    """Run the tasks behind a progress bar (closed however the run ends)."""
    from hlbench.sweep.plan import RunOptions
    from hlbench.sweep.progress import Progress
    from hlbench.sweep.runner import run_tasks

    progress = Progress(tasks, enabled=not args.quiet)
    telemetry = None  # the suite's settings
    if args.no_telemetry:
        from hlbench.telemetry.collect import TelemetryConfig

        telemetry = TelemetryConfig(enabled=False)
    options = RunOptions(
        records_path=records_path,
        run_id=run_id,
        telemetry=telemetry,
        profile=True if args.profile else None,  # without the flag: the suite's `profile`
        devices=tuple(devices) if devices is not None else None,
        node_rank=args.node_rank,
        shard=sharded.shard.record_field(sharded.n_mine) if sharded else None,
        on_start=progress.start,
        on_record=progress.record,
    )
    try:
        records = run_tasks(suite, tasks, options)
    finally:
        progress.close()
    print(progress.summary(records))
    return records


def _summarize(
    args: argparse.Namespace,
    suite_name: str,
    records: list[dict[str, Any]],
    records_path: Path,
    run_id: str,
    sharded: cluster.Sharded | None = None,
) -> Path | None:
    """Where the records are, and the report written now (its path) or the command that writes
    it."""
    print(f"records: {records_path}")
    if args.report:
        from hlbench.reporting import write_report

        out = args.report
        if args.report == Path("auto"):
            out = records_path.with_suffix(".md")  # results/ is ignored by git; reports/ is not
        written = write_report([records_path], out)
        print(f"report: {written}")
        return written
    elif records and all(r.get("kind") == "follower" for r in records):
        print(
            "this node ran no rank 0: the cells' records are on the node that did "
            "(node 0 with a static rendezvous)"
        )
    elif sharded:
        print(cluster.next_step(sharded, records_path, suite_name))
    else:
        # Beside the records (results/ is ignored by git): the tracked reports/ folder holds the
        # reports committed on purpose.
        print(f"next: hlbench report {records_path} -o {records_path.with_suffix('.md')}")
    return None


def _check_placement(args: argparse.Namespace, suite: Any) -> list[str] | None:
    """--devices and --node-rank against the suite and this machine; UsageError naming what to fix.
    The GPUs to run on, as the workers' CUDA_VISIBLE_DEVICES entries (None without --devices)."""
    launcher = suite.config.launcher
    nnodes = launcher.nnodes if launcher else 1
    if not 0 <= args.node_rank < nnodes:
        if launcher:
            raise UsageError(
                f"--node-rank {args.node_rank}: the suite's launcher has {nnodes} "
                f"node(s) (0 … {nnodes - 1})"
            )
        raise UsageError(f"--node-rank {args.node_rank}: the suite has no multi-node `launcher:`")
    if args.devices is None:
        return None
    if launcher is not None:
        raise UsageError(
            "--devices runs single-device cells side by side; this suite's `launcher:` "
            "already gives each cell all the GPUs of its ranks (drop --devices or the "
            "launcher)"
        )
    if suite.config.device == "cpu" or suite.config.device.startswith("cuda:"):
        raise UsageError(
            f"--devices: the suite pins device {suite.config.device!r}; set device: "
            "auto or cuda (each worker sees only its GPU, as cuda:0)"
        )
    devices = [d.strip() for d in args.devices.split(",")]
    if not all(d.isdigit() for d in devices) or len(set(devices)) != len(devices):
        raise UsageError(
            f"--devices {args.devices!r}: expected distinct GPU indices separated by "
            "commas, e.g. 0,1,2,3"
        )
    return _physical_gpus(args.devices, devices)


def _physical_gpus(flag: str, devices: list[str]) -> list[str]:
    """--devices' indices (into the GPUs this process sees) as the entries a worker's
    CUDA_VISIBLE_DEVICES names: through the parent's CUDA_VISIBLE_DEVICES when it is set."""
    from hlbench.telemetry import nvml

    visible = cuda_visible_devices()
    count = len(visible) if visible is not None else nvml.gpu_count()
    if count == 0:
        raise UsageError(
            f"--devices {flag}: no NVIDIA GPU is visible here (NVML, CUDA_VISIBLE_DEVICES)"
        )
    missing = [d for d in devices if int(d) >= count]
    if missing:
        raise UsageError(
            f"--devices: GPU(s) {', '.join(missing)} do not exist; this machine shows "
            f"{count} (0 … {count - 1})"
        )
    if visible is not None:
        return [visible[int(d)] for d in devices]
    return devices


def _print_cells(suite: Any) -> None:
    """--dry-run: the cells and whether each would run or be skipped here."""
    from tabulate import tabulate

    rows = []
    for cell in suite.cells:
        skip = get_spec(cell.backend).unsupported_reason_for(cell)
        w = cell.workload
        plan = f"skip: {skip}" if skip else "run"
        rows.append([cell.id, cell.hash, w.global_batch, w.micro_batch, w.seq_len, plan])
    print(
        tabulate(rows, headers=["cell", "hash", "global batch", "micro batch", "seq len", "plan"])
    )
    repeats = suite.config.measurement.repeats
    print(
        f"{len(suite.cells)} cell(s) × {repeats} repeat(s) in suite {suite.name!r} ({suite.path})"
    )
