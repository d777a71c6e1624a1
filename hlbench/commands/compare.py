"""`hlbench compare BASELINE CANDIDATE`: a regression verdict with an exit code."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hlbench.comparison.metrics import DEFAULT_METRIC, METRICS
from hlbench.comparison.verdicts import (
    DEFAULT_ALPHA,
    DEFAULT_MIN_SAMPLES,
    DEFAULT_THRESHOLD,
    EXIT_INCOMPARABLE,
    Thresholds,
)
from hlbench.errors import UsageError

EPILOG = f"""\
BASELINE and CANDIDATE are records files (results/<suite>/<run-id>.jsonl) or directories of them
(a stored baseline: results/baselines/<name>/). Cells are matched by content hash. An input that
holds several runs uses its latest, and says so; --run-id picks runs (all: pool them).

the run is the unit: each repeat of a cell (its own worker process) gives one estimate per metric
(tokens/s = tokens over measured wall time, as in run/report/table; step time = the run's median
step). change = median candidate / median baseline - 1. p = two-sided exact Mann-Whitney U over
the runs, CI = its (1 - alpha) interval of the ratio. regressed / improved: the CI excludes no
change, |change| > threshold and |change| > the runner's noise floor; unchanged: the CI, shifted by
the noise floor, lies within +-threshold; inconclusive otherwise, or with too few runs for alpha
(5 per side at 0.01, 4 at 0.05). Peak memory and excess loss (deterministic for a fixed cell) with
too few runs are judged on the threshold alone (noted). A cell ok in the baseline that failed (oom,
timeout, error, crashed) in the candidate counts as regressed ("failed").

noise floor: `hlbench compare --calibrate RUN RUN [RUN ...]` over A/A runs of unchanged code
reports, per cell and metric, the spread between identical suite runs and the smallest change
this runner can resolve; -o FILE writes it, `hlbench baseline save ... --noise FILE` stores it,
and compare applies it (a stored baseline's own, or --noise FILE).

metrics: {", ".join(METRICS)}, or all.

exit status (when several apply, the first listed wins):
  2  usage error, or the runs are not comparable (GPU model, driver major, framework versions,
     records schema, a cell's workload definition, CPU model of GPU-less runs) and no --force;
     also when no cell is common to both runs
  1  some cell regressed (or failed in the candidate)
  3  nothing regressed, but some verdict was inconclusive
  0  nothing regressed and nothing inconclusive (unchanged or improved); --calibrate: written
"""

USAGE = (
    "hlbench compare [options] BASELINE CANDIDATE\n"
    "       hlbench compare --calibrate [options] RUN RUN [RUN ...]"
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="compare two runs cell by cell: regressed / improved / unchanged / inconclusive, "
        "as an exit code",
        description="Compare a CANDIDATE run against a BASELINE run, cell by cell and metric by "
        "metric.",
        epilog=EPILOG,
        usage=USAGE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "runs",
        type=Path,
        nargs="+",
        metavar="RUN",
        help="BASELINE then CANDIDATE (records files or run directories); with --calibrate, "
        "two or more A/A runs of unchanged code (files, or directories holding several runs)",
    )
    p.add_argument(
        "--calibrate",
        action="store_true",
        help="measure this runner's noise from A/A runs instead of comparing: per cell and metric "
        "the spread between identical runs and the noise floor (write it with -o FILE)",
    )
    p.add_argument(
        "--noise",
        type=Path,
        metavar="FILE",
        help="noise floors to apply (from --calibrate -o); default: those stored with a "
        "baseline directory, if any",
    )
    p.add_argument(
        "--run-id",
        action="append",
        default=[],
        metavar="ID",
        help="use these runs of an input that holds several (repeatable; 'all' pools them; "
        "default: the latest, with a note)",
    )
    _add_rule_options(p)
    _add_output_options(p)
    p.set_defaults(func=cmd_compare)


def _add_rule_options(p: argparse.ArgumentParser) -> None:
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
        help="significance level of the two-sided test over runs; the fewest runs per side it "
        f"allows: 5 at 0.01, 4 at 0.05 (default {DEFAULT_ALPHA})",
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
        help="runs (repeats) per side needed for a test, at least; alpha may need more "
        f"(default {DEFAULT_MIN_SAMPLES})",
    )


def _add_output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--force",
        action="store_true",
        help="compare runs whose environments differ; the differences are printed as a warning",
    )
    p.add_argument(
        "--format",
        choices=("text", "md", "json", "junit"),
        default="text",
        help="text (terminal), md (pull-request comment), json (tools), junit (JUnit XML for a "
        "CI's test view: a test case per cell and metric); default text",
    )
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="FILE",
        help="write the report to FILE instead of stdout",
    )


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


def _thresholds(args: argparse.Namespace) -> Thresholds:
    if not 0 < args.alpha < 1:
        raise UsageError(f"--alpha {args.alpha}: expected a probability in (0, 1), e.g. 0.01")
    if args.min_samples < 2:
        raise UsageError(f"--min-samples {args.min_samples}: expected at least 2")
    return Thresholds(alpha=args.alpha, threshold=args.threshold, min_samples=args.min_samples)


def _write(text: str, output: Path | None) -> None:
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)


def cmd_compare(args: argparse.Namespace) -> int:
    metrics, thresholds = _metrics(args.metric), _thresholds(args)
    if args.calibrate:
        return _calibrate(args, metrics, thresholds)
    if len(args.runs) != 2:
        raise UsageError(
            f"compare takes BASELINE and CANDIDATE, {len(args.runs)} path(s) given; to measure "
            "the noise of several A/A runs use --calibrate"
        )
    return _compare(args, metrics, thresholds)


def _compare(args: argparse.Namespace, metrics: list[str], thresholds: Thresholds) -> int:
    from hlbench.api import compare

    base_path, cand_path = args.runs
    result = compare(
        base_path,
        cand_path,
        metrics=metrics,
        thresholds=thresholds,
        noise=args.noise,
        run_ids=args.run_id,
        force=args.force,
    )
    for note in result.notes:
        kind = "warning" if note in result.warnings else "note"
        print(f"hlbench: {kind}: {note}", file=sys.stderr)
    _write(result.render(args.format), args.output)
    if result.exit_code == EXIT_INCOMPARABLE:  # one line on stderr, as every exit-2 error
        report = result.report
        fatal = "; ".join(report.differences.fatal)
        why = (
            report.message
            or f"the runs are not comparable: {fatal} (use --force to compare anyway)"
        )
        print(f"hlbench: error: {why}", file=sys.stderr)
    return result.exit_code


def _calibrate(args: argparse.Namespace, metrics: list[str], thresholds: Thresholds) -> int:
    if args.format == "junit":
        raise UsageError("--format junit is for a comparison; --calibrate writes text, md or json")
    from hlbench.comparison import noise
    from hlbench.comparison.comparability import load_run
    from hlbench.comparison.inputs import ALL_RUNS, split_runs
    from hlbench.comparison.render import render_noise

    runs = []
    for path in args.runs:  # every run of every input is one A/A run, unless --run-id narrows
        runs += split_runs(load_run(path, args.run_id or [ALL_RUNS]))
    calibration = noise.calibrate(runs, metrics, thresholds)
    if not calibration.floors:
        raise UsageError(
            "--calibrate: no cell ran ok in two or more of these runs with "
            f"{', '.join(metrics)}; give A/A runs of one suite"
        )
    if args.output and args.format == "text" and args.output.suffix == ".json":
        args.format = "json"  # -o noise.json is the file `baseline save --noise` reads
    _write(render_noise(calibration, args.format), args.output)
    return 0
