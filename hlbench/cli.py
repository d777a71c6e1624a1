"""The `hlbench` command: thin subcommands over the library.

Bad input (suite, arguments, records file) prints one line `hlbench: error: ...` and exits 2 before
anything runs.
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from hlbench import __version__
from hlbench.backends import get_spec, registry
from hlbench.env import host_environment
from hlbench.errors import UsageError

EXIT_OK, EXIT_FAILED_CELLS, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

# Subcommands that live in their own module (one idea each). Each module defines
# `register(sub: argparse._SubParsersAction) -> None`, which adds its parser and sets `func`;
# heavy imports (pandas, scipy, a framework) stay inside the command function so `--help` is fast.
COMMAND_MODULES: tuple[str, ...] = (
    "hlbench.commands.compare",
    "hlbench.commands.baseline",
    "hlbench.commands.table",
    "hlbench.commands.report",
    "hlbench.commands.parity",
)

RUN_EPILOG = """\
records: results/<suite>/<run-id>.jsonl, one JSON line per cell and repeat (see the README for the
fields); worker logs beside it in <run-id>.logs/.

exit status: 0 every cell ok or skipped; 1 some cell ended oom, timeout, error or crashed (its record
says why; the other cells still ran); 2 bad suite or arguments (nothing ran); 130 interrupted (resume
with --resume).
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's default exit code is already 2; keep one line
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="hlbench",
        description="Benchmark language-model training across precision × accumulation × pruning.",
    )
    parser.add_argument("--version", action="version", version=f"hlbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser(
        "run",
        help="run a suite: one worker process per cell, records appended as JSONL",
        description="Validate SUITE, expand its matrix and train every cell in a fresh worker process.",
        epilog=RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("suite", type=Path, help="suite YAML file, e.g. suites/default.yaml")
    run.add_argument("--dry-run", action="store_true", help="validate and list the cells; run nothing")
    run.add_argument("--resume", type=Path, metavar="FILE",
                     help="append to FILE, running only the cells without an ok record in it")
    run.add_argument("--results-dir", type=Path, default=Path("results"), metavar="DIR",
                     help="where new records files go (default: results)")
    run.add_argument("--only", metavar="GLOB", action="append",
                     help="run only cells whose id matches GLOB (repeatable), e.g. 'gpt-*/torch/*/ga1/*'")
    run.add_argument("--quiet", action="store_true", help="no progress bar (for CI logs); the summary still prints")
    run.add_argument("--no-telemetry", action="store_true",
                     help="no NVML/host sampling beside the workers (default: the suite's telemetry settings)")
    run.add_argument("--profile", action="store_true",
                     help="a profiling pass per cell after its measured windows: phase breakdown, framework "
                          "profiler traces in <run-id>.profile/ (default: the suite's `profile`)")
    run.add_argument("--devices", metavar="IDS",
                     help="run single-device cells concurrently, one per GPU, e.g. 0,1,2,3: each worker sees only "
                          "its GPU (CUDA_VISIBLE_DEVICES) and has its own telemetry; for the sweep's throughput "
                          "(not with a suite `launcher:`, whose cells use the GPUs themselves)")
    run.add_argument("--node-rank", type=int, default=0, metavar="N",
                     help="this machine's rank in a multi-node suite (launcher.nnodes > 1): run the same command "
                          "on every node with 0 … nnodes-1; node 0 writes the cells' records (default: 0)")
    run.add_argument("--report", type=Path, metavar="MD", nargs="?", const=Path("auto"),
                     help="write a markdown report of this run when it ends (default path: reports/<suite>-<run-id>.md)")
    run.set_defaults(func=cmd_run)

    env = sub.add_parser("env", help="print what this machine offers (JSON): host, GPUs via NVML, frameworks, "
                                     "the measured CPU GEMM peak")
    env.add_argument("--no-calibrate", action="store_true", help="skip the CPU GEMM measurement (~1 s)")
    env.set_defaults(func=cmd_env)
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return parser


def cmd_env(args: argparse.Namespace) -> int:
    from hlbench.env import machine_report

    frameworks = {name: spec.framework_installed() for name, spec in registry().items()}
    report = {"host": host_environment(), "backends_installed": frameworks, **machine_report(not args.no_calibrate)}
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    # Imported here so `hlbench --help` stays fast.
    from hlbench.run import runner
    from hlbench.suite import load_suite

    suite = load_suite(args.suite)
    cells = suite.cells
    if args.only:
        cells = [c for c in cells if any(fnmatch.fnmatchcase(c.id, g) for g in args.only)]
        if not cells:
            raise UsageError(f"--only {' '.join(args.only)}: matches none of the {len(suite.cells)} cells")
        suite.cells = cells
    devices = _check_placement(args, suite)
    if args.dry_run:
        _print_cells(suite)
        return EXIT_OK
    for name in suite.config.backends:
        spec = get_spec(name)
        if not spec.framework_installed():
            raise UsageError(
                f"{args.suite}: backends: {name!r} needs the {spec.framework!r} package, which is not "
                f"installed here; {spec.install_hint}"
            )

    if args.resume:
        records_path, run_id = args.resume, args.resume.stem
        if not records_path.is_file():
            raise UsageError(f"--resume {records_path}: no such records file")
        done = runner.completed(records_path)
    else:
        run_id = runner.new_run_id()
        records_path, done = args.results_dir / suite.name / f"{run_id}.jsonl", set()
    tasks = runner.plan(suite, done)
    if not tasks:
        print(f"nothing to run: every cell already has an ok record in {records_path}")
        return EXIT_OK
    print(f"hlbench: {len(tasks)} cell run(s) of suite {suite.name!r} → {records_path}", file=sys.stderr)

    from hlbench.run.progress import Progress

    progress = Progress(tasks, enabled=not args.quiet)
    telemetry = None
    if args.no_telemetry:
        from hlbench.telemetry.collect import TelemetryConfig

        telemetry = TelemetryConfig(enabled=False)
    try:
        records = runner.run_tasks(suite, tasks, records_path, run_id, progress.start, progress.record, telemetry,
                                   True if args.profile else None, devices, args.node_rank)
    except runner.Interrupted:
        progress.close()
        print(f"hlbench: interrupted; records so far are in {records_path}\n"
              f"resume with: hlbench run {args.suite} --resume {records_path}", file=sys.stderr)
        return EXIT_INTERRUPTED
    progress.close()
    print(progress.summary(records))
    print(f"records: {records_path}")
    if args.report:
        from hlbench.report import write_report

        out = Path("reports") / f"{suite.name}-{run_id}.md" if args.report == Path("auto") else args.report
        print(f"report: {write_report([records_path], out)}")
    elif records and all(r.get("kind") == "follower" for r in records):
        print("this node ran no rank 0: the cells' records are on the node that did (node 0 with a static rendezvous)")
    else:
        print(f"next: hlbench report {records_path} -o reports/{suite.name}.md")
    failed = [r for r in records if r["status"] not in ("ok", "skipped")]
    return EXIT_FAILED_CELLS if failed else EXIT_OK


def _check_placement(args: argparse.Namespace, suite: Any) -> list[str] | None:
    """--devices and --node-rank against the suite and this machine; UsageError naming what to fix."""
    launcher = suite.config.launcher
    nnodes = launcher.nnodes if launcher else 1
    if not 0 <= args.node_rank < nnodes:
        raise UsageError(f"--node-rank {args.node_rank}: the suite's launcher has {nnodes} node(s) (0 … {nnodes - 1})"
                         if launcher else f"--node-rank {args.node_rank}: the suite has no multi-node `launcher:`")
    if args.devices is None:
        return None
    if launcher is not None:
        raise UsageError("--devices runs single-device cells side by side; this suite's `launcher:` already gives "
                         "each cell all the GPUs of its ranks (drop --devices or the launcher)")
    if suite.config.device == "cpu" or suite.config.device.startswith("cuda:"):
        raise UsageError(f"--devices: the suite pins device {suite.config.device!r}; set device: auto or cuda "
                         "(each worker sees only its GPU, as cuda:0)")
    devices = [d.strip() for d in args.devices.split(",")]
    if not all(d.isdigit() for d in devices) or len(set(devices)) != len(devices):
        raise UsageError(f"--devices {args.devices!r}: expected distinct GPU indices separated by commas, e.g. 0,1,2,3")
    from hlbench.telemetry import nvml

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    count = len([v for v in visible.split(",") if v.strip()]) if visible is not None else nvml.gpu_count()
    if count == 0:
        raise UsageError(f"--devices {args.devices}: no NVIDIA GPU is visible here (NVML, CUDA_VISIBLE_DEVICES)")
    missing = [d for d in devices if int(d) >= count]
    if missing:
        raise UsageError(f"--devices: GPU(s) {', '.join(missing)} do not exist; this machine shows {count} (0 … {count - 1})")
    if visible is not None:  # a worker's CUDA_VISIBLE_DEVICES names physical GPUs: map through the parent's
        entries = [v.strip() for v in visible.split(",") if v.strip()]
        devices = [entries[int(d)] for d in devices]
    return devices


def _print_cells(suite: Any) -> None:
    from tabulate import tabulate

    rows = []
    for cell in suite.cells:
        skip = get_spec(cell.backend).unsupported_reason_for(cell)
        w = cell.workload
        rows.append([cell.id, cell.hash, w["global_batch"], w["micro_batch"], w["seq_len"], f"skip: {skip}" if skip else "run"])
    print(tabulate(rows, headers=["cell", "hash", "global batch", "micro batch", "seq len", "plan"]))
    repeats = suite.config.measurement.repeats
    print(f"{len(suite.cells)} cell(s) × {repeats} repeat(s) in suite {suite.name!r} ({suite.path})")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UsageError as exc:
        print(f"hlbench: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
