"""`hlbench compare BASELINE CANDIDATE`: a regression verdict with an exit code."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hlbench.compare.verdicts import (
    DEFAULT_ALPHA,
    DEFAULT_METRIC,
    DEFAULT_MIN_SAMPLES,
    DEFAULT_THRESHOLD,
    EXIT_INCOMPARABLE,
    METRICS,
    NOT_AVAILABLE,
)
from hlbench.errors import UsageError

EPILOG = f"""\
BASELINE and CANDIDATE are records files (results/<suite>/<run-id>.jsonl) or directories holding
exactly one (a stored baseline: results/baselines/<name>/). Cells are matched by content hash.

verdict per cell and metric: change = candidate median / baseline median - 1; p = two-sided
Mann-Whitney U on the raw samples (tokens/s and step time: one per measured step, windows and
repeats pooled). regressed / improved: p < alpha and |change| > threshold; inconclusive: fewer than
--min-samples per side, or |change| > threshold without significance; unchanged otherwise.
Per-run metrics (memory, energy, loss: one value per repeat) below --min-samples repeats are judged
on the threshold alone (noted in the output). A cell ok in the baseline that failed (oom, timeout,
error, crashed) in the candidate counts as regressed ("failed").

metrics: {", ".join(METRICS)}, or all.

exit status (when several apply, the first listed wins):
  2  usage error, or the runs are not comparable (GPU model, driver major, framework versions,
     records schema, a cell's workload definition, CPU model of GPU-less runs) and no --force;
     also when no cell is common to both runs
  1  some cell regressed (or failed in the candidate)
  3  nothing regressed, but some verdict was inconclusive
  0  nothing regressed and nothing inconclusive (unchanged or improved)
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="compare two runs cell by cell: regressed / improved / unchanged / inconclusive, "
        "as an exit code",
        description="Compare a CANDIDATE run against a BASELINE run, cell by cell and metric by "
        "metric.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("baseline", type=Path, help="records file or run directory of the reference run")
    p.add_argument(
        "candidate", type=Path, help="records file or run directory of the run under test"
    )
    p.add_argument(
        "--metric",
        action="append",
        metavar="NAME",
        help=f"metric to compare (repeatable; default {DEFAULT_METRIC}): {', '.join(METRICS)}, all",
    )
    p.add_argument(
        "--alpha",
        type=float,
        default=DEFAULT_ALPHA,
        help=f"significance level of the Mann-Whitney U test (default {DEFAULT_ALPHA})",
    )
    p.add_argument(
        "--threshold",
        type=_fraction,
        default=DEFAULT_THRESHOLD,
        help="smallest relative change that counts, e.g. 5%% or 0.05 "
        f"(default {DEFAULT_THRESHOLD * 100:g}%%)",
    )
    p.add_argument(
        "--min-samples",
        type=int,
        default=DEFAULT_MIN_SAMPLES,
        help=f"samples per side needed for a test (default {DEFAULT_MIN_SAMPLES})",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="compare runs whose environments differ; the differences are printed as a warning",
    )
    p.add_argument(
        "--format",
        choices=("text", "md", "json"),
        default="text",
        help="text (terminal), md (pull-request comment), json (tools); default text",
    )
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="FILE",
        help="write the report to FILE instead of stdout",
    )
    p.set_defaults(func=cmd_compare)


def _fraction(text: str) -> float:
    """'5%' or '0.05' → 0.05; a bare number ≥ 1 is refused (5 would mean 500%)."""
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a fraction (0.05) or a percentage (5%)"
        ) from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected a fraction in [0, 1) or a percentage, e.g. 5% or 0.05"
        )
    return value


def _metrics(names: list[str] | None) -> list[str]:
    if not names:
        return [DEFAULT_METRIC]
    if "all" in names:
        return list(METRICS)
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise UsageError(f"--metric {unknown[0]}: unknown; choose from {', '.join(METRICS)}, all")
    return list(dict.fromkeys(names))  # keep order, drop repeats


def cmd_compare(args: argparse.Namespace) -> int:
    from hlbench.compare.comparability import differences, load_run
    from hlbench.compare.render import RENDERERS, Report
    from hlbench.compare.runs import compare_runs
    from hlbench.compare.verdicts import Thresholds, exit_code

    metrics = _metrics(args.metric)
    if not 0 < args.alpha < 1:
        raise UsageError(f"--alpha {args.alpha}: expected a probability in (0, 1), e.g. 0.01")
    if args.min_samples < 2:
        raise UsageError(f"--min-samples {args.min_samples}: expected at least 2")
    thresholds = Thresholds(
        alpha=args.alpha, threshold=args.threshold, min_samples=args.min_samples
    )
    baseline, candidate = load_run(args.baseline), load_run(args.candidate)
    diff = differences(baseline, candidate)

    comparison, message = None, ""
    if diff.fatal and not args.force:
        code = EXIT_INCOMPARABLE
    else:
        comparison = compare_runs(baseline.records, candidate.records, metrics, thresholds)
        decisive = [v for v in comparison.verdicts() if v != NOT_AVAILABLE]
        if not comparison.results and not comparison.not_run:
            code, message = EXIT_INCOMPARABLE, "no cell is common to both runs (different suites?)"
        elif not decisive:  # a CI guard that compared nothing must not pass
            code, message = (
                EXIT_INCOMPARABLE,
                (f"nothing to compare: no common cell has {', '.join(metrics)} on both sides"),
            )
        else:
            code = exit_code(comparison.verdicts())

    report = Report(
        str(args.baseline),
        str(args.candidate),
        metrics,
        thresholds,
        diff,
        args.force,
        comparison,
        code,
        message,
    )
    text = RENDERERS[args.format](report)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    if code == EXIT_INCOMPARABLE:  # one line on stderr, as every exit-2 error of hlbench
        why = (
            message
            or "the runs are not comparable: "
            + "; ".join(diff.fatal)
            + " (use --force to compare anyway)"
        )
        print(f"hlbench: error: {why}", file=sys.stderr)
    return code
