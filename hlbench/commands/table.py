"""`hlbench table RESULTS...`: the records as a tidy table, a pivot, or github-action-benchmark
JSON."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hlbench.errors import UsageError

FORMATS = ("md", "csv", "parquet", "json", "gab-json")

EPILOG = """\
examples:
  hlbench table results/default/RUN.jsonl                              every (cell, repeat) row, \
markdown
  hlbench table results/default/ --format csv -o table.csv             all columns, every records \
file below
  hlbench table RUN.jsonl --pivot workload,backend,precision:accumulation --metric \
step_time_median_s
  hlbench table RUN.jsonl --format gab-json --metric tokens_per_s -o bench.json   (tool: \
customBiggerIsBetter)

Pivots and gab-json take the median over ok repeats; failed and skipped rows appear only in the \
tidy rows.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "table",
        help="records as a table (markdown, csv, parquet, json, github-action-benchmark json)",
        description="Load records files (or directories of them) into one row per cell and repeat.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "results",
        type=Path,
        nargs="+",
        metavar="RESULTS",
        help="records .jsonl files or directories",
    )
    p.add_argument(
        "--pivot",
        metavar="ROWS:COLS",
        help="pivot the metric: comma-separated row and column names",
    )
    p.add_argument(
        "--metric",
        metavar="M",
        help="metric column (default for pivots and gab-json: tokens_per_s)",
    )
    p.add_argument("--format", choices=FORMATS, default="md", help="output format (default: md)")
    p.add_argument(
        "-o", "--output", type=Path, metavar="FILE", help="write to FILE instead of standard output"
    )
    p.set_defaults(func=cmd_table)


def cmd_table(args: argparse.Namespace) -> int:
    from hlbench.reporting import tables
    from hlbench.results import load

    df = load(args.results)
    if df.empty:
        raise UsageError(
            f"{', '.join(map(str, args.results))}: no cell records (parity records only?)"
        )
    metric = args.metric or tables.DEFAULT_METRIC
    if args.metric or args.pivot or args.format == "gab-json":
        tables.check_metric(df, metric)
    if args.format == "gab-json":
        if args.pivot:
            raise UsageError("--pivot does not apply to --format gab-json (one entry per cell)")
        tool = (
            "customBiggerIsBetter" if metric in tables.BIGGER_IS_BETTER else "customSmallerIsBetter"
        )
        print(f"hlbench: {metric} → github-action-benchmark tool {tool}", file=sys.stderr)
        return _emit(tables.gab_json(df, metric), args.output)
    if args.pivot:
        rows, cols = tables.parse_pivot(args.pivot, df)
        frame = tables.pivot(df, rows, cols, metric)
    else:
        frame = tables.scalar_frame(df)
        if args.metric:
            frame = frame[["cell_id", "repeat", "run_id", "status", metric]]
        elif args.format == "md":
            frame = frame[tables.MD_VIEW]
    if args.format == "md":
        return _emit(tables.to_markdown(frame), args.output)
    if args.format == "csv":
        return _emit(frame.to_csv(index=False), args.output)
    if args.format == "json":
        return _emit(frame.to_json(orient="records", indent=1) + "\n", args.output)
    return _parquet(frame, args.output)


def _emit(text: str, output: Path | None) -> int:
    if output is None:
        sys.stdout.write(text)
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
        print(f"wrote {output}", file=sys.stderr)
    return 0


def _parquet(frame, output: Path | None) -> int:  # type: ignore[no-untyped-def]
    if output is None:
        raise UsageError("--format parquet is binary: give -o FILE")
    try:
        frame.to_parquet(output, index=False)
    except ImportError:
        raise UsageError(
            "--format parquet needs pyarrow (pip install pyarrow); csv and json need nothing"
        ) from None
    print(f"wrote {output}", file=sys.stderr)
    return 0
