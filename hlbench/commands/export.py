"""`hlbench export --to mlflow|tensorboard RUN...`: the records where teams already look."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hlbench.errors import UsageError

DEFAULT_MLFLOW = "default"  # `run --mlflow` without a URI: the local store

TARGETS = ("mlflow", "tensorboard")

EPILOG = """\
RUN: records files (results/<suite>/<run-id>.jsonl) or directories of them, as `hlbench report`
takes them. Each cell record (cell × repeat) becomes one run there.

mlflow: an experiment per suite (--experiment to choose one), a parent run per hlbench run id, a
nested run per cell record: params = the cell's axes and definition, metrics = the record's
figures (the names `hlbench table` uses), step_time_s and train_loss_nats as history per step,
artifacts = record.json, the worker's log and telemetry samples (--report MD adds a report and its
plots to the parent run). Store: --tracking-uri URI, else $MLFLOW_TRACKING_URI, else the local
store ./mlruns (SQLite; a plain path is a local store there). View it with
`mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db`.

tensorboard: event files under DIR/<suite>/<run id>/<cell id>/r<repeat>: step/step_time_s and
step/train_loss_nats per step, summary/<figure> at step 0, the cell as text. View with
`tensorboard --logdir DIR`.

Exporting again is idempotent: a record already exported is skipped, one that changed since
(a resumed run) replaces its earlier copy.

examples:
  hlbench export --to mlflow results/default/RUN.jsonl
  hlbench export --to mlflow results/default/ --tracking-uri http://mlflow.internal:5000
  hlbench export --to tensorboard tb/ results/default/RUN.jsonl
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export records to MLflow (a run per cell, grouped by suite run) or TensorBoard "
        "(event files per cell)",
        description="Export records files to MLflow or TensorBoard.",
        epilog=EPILOG,
        usage="hlbench export --to mlflow [options] RUN [RUN ...]\n"
        "       hlbench export --to tensorboard (DIR | -o DIR) RUN [RUN ...]",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--to", choices=TARGETS, required=True, help="where to export")
    p.add_argument(
        "paths",
        type=Path,
        nargs="+",
        metavar="RUN",
        help="records files or directories (with --to tensorboard and no -o: DIR first)",
    )
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="DIR",
        help="tensorboard: the log directory (instead of DIR before the runs)",
    )
    p.add_argument(
        "--tracking-uri",
        metavar="URI",
        help="mlflow: tracking URI (a server, sqlite:///FILE, ...) or a local store directory "
        "(default: $MLFLOW_TRACKING_URI, else ./mlruns)",
    )
    p.add_argument(
        "--experiment", metavar="NAME", help="mlflow: experiment name (default: the suite's name)"
    )
    p.add_argument(
        "--report",
        type=Path,
        metavar="MD",
        help="mlflow: a report of these runs (hlbench report ... -o MD) to attach, with its plots, "
        "to each suite run's parent run",
    )
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    if args.to == "tensorboard":
        return _tensorboard(args)
    if args.output is not None:
        raise UsageError("-o applies to --to tensorboard; MLflow writes to --tracking-uri")
    from hlbench.export import to_mlflow
    from hlbench.export.source import load_cells

    to_mlflow.check_installed()
    cells = load_cells(args.paths)
    outcome = to_mlflow.export(cells, args.tracking_uri, args.experiment, args.report)
    print(outcome.summary())
    return 0


def _tensorboard(args: argparse.Namespace) -> int:
    for flag, value in (
        ("--tracking-uri", args.tracking_uri),
        ("--experiment", args.experiment),
        ("--report", args.report),
    ):
        if value is not None:
            raise UsageError(f"{flag} applies to --to mlflow")
    out_dir, runs = args.output, list(args.paths)
    if out_dir is None:
        if len(runs) < 2:
            raise UsageError(
                "--to tensorboard takes the log directory and then the runs: "
                "hlbench export --to tensorboard DIR RUN [RUN ...] (or -o DIR)"
            )
        out_dir, runs = runs[0], runs[1:]
    if out_dir.is_file() or out_dir.suffix == ".jsonl":
        raise UsageError(
            f"{out_dir}: a file, not a log directory; give the directory first "
            "(hlbench export --to tensorboard DIR RUN ...) or with -o DIR"
        )
    from hlbench.export import to_tensorboard
    from hlbench.export.source import load_cells

    to_tensorboard.check_installed()
    outcome = to_tensorboard.export(load_cells(runs), out_dir)
    print(outcome.summary())
    return 0


def after_run(target: str | None, records_path: Path, report: Path | None) -> bool:
    """--mlflow: the run's records (and report) into MLflow; False, said on stderr, when the store
    refused them (the records are kept and can be exported later)."""
    if target is None:
        return True
    from hlbench.export import to_mlflow
    from hlbench.export.source import load_cells

    uri = None if target == DEFAULT_MLFLOW else target
    try:
        print(to_mlflow.export(load_cells([records_path]), uri, report=report).summary())
    except UsageError as exc:
        print(
            f"hlbench: error: {exc}; the records are kept, export them with: "
            f"hlbench export --to mlflow {records_path}",
            file=sys.stderr,
        )
        return False
    return True
