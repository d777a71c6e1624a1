"""`hlbench report RESULTS... -o reports/NAME.md`: a markdown report with PNG plots beside it, or
`-o NAME.html`: the same report as one self-contained page with interactive plots."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hlbench.errors import UsageError

EPILOG = """\
The report: environment, computed findings, the trade-off frontier (what to train with), the \
matrix of
tokens/s, step time, peak memory, energy, MFU and excess loss per workload and backend, effects \
against
the fp32 / 1-step / unpruned baseline with their spread, framework ratios and parity, failures and
skips, stability warnings, and plots in NAME_plots/ beside the markdown. The same records always \
give
byte-identical markdown. With -o NAME.html: the same sections in one HTML file with interactive
plots (hover for a cell's figures, click a legend entry to toggle it), plotly.js inline so it opens
offline; needs pip install 'hlbench[html]'.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write a markdown (or HTML) report with plots from records files",
        description="Build a markdown report (tables, effects, frontier, findings) and PNG plots, "
        "or the same as one HTML page with interactive plots.",
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
        "-o",
        "--output",
        type=Path,
        metavar="FILE.md|FILE.html",
        help="the report (default: reports/<suite>.md); the suffix picks the form: .md with plots "
        "in <stem>_plots/ beside it, .html one self-contained page",
    )
    p.add_argument(
        "--loss-tolerance",
        type=float,
        default=None,
        metavar="NATS",
        help="excess loss a recommended cell may add over fp32 (default: 0.02)",
    )
    p.set_defaults(func=cmd_report)


def default_output(results: list[Path]) -> Path:
    """reports/<suite>.md, the suite being the first records file's directory under results/."""
    from hlbench.results import expand_paths
    from hlbench.sweep.shard import shard_of_file

    first = expand_paths(results)[0]
    if shard_of_file(first) is not None:  # results/<suite>/<run-id>/shard-I-of-N.jsonl
        return Path("reports") / f"{first.resolve().parent.parent.name}.md"
    return Path("reports") / f"{first.parent.name or first.stem}.md"


def cmd_report(args: argparse.Namespace) -> int:
    from hlbench.reporting import write_report
    from hlbench.reporting.tolerance import DEFAULT_TOLERANCE_NATS

    out = args.output or default_output(args.results)
    if out.suffix not in (".md", ".html"):
        raise UsageError(f"-o {out}: give a .md (markdown) or .html (one interactive page) path")
    tolerance = DEFAULT_TOLERANCE_NATS if args.loss_tolerance is None else args.loss_tolerance
    if tolerance < 0:
        raise UsageError(f"--loss-tolerance {tolerance}: must be ≥ 0")
    path = write_report(list(args.results), out, tolerance)
    where = (
        "one file, plots inline"
        if path.suffix == ".html"
        else f"plots in {path.parent / (path.stem + '_plots')}"
    )
    print(f"report: {path} ({where})", file=sys.stderr)
    return 0
