"""hlbench from Python: run a suite, load records as a DataFrame, compare two runs, write a report.

    import hlbench
    run = hlbench.run("smoke")                    # a shipped suite's name or a YAML path
    run.frame                                     # one row per cell and repeat (pandas)
    verdict = hlbench.compare(baseline_path, run.records_path)
    verdict.exit_code, verdict.frame              # as `hlbench compare`: 0 / 1 / 2 / 3
    hlbench.report(run.records_path)              # markdown + plots beside the records

The same code as the CLI's commands, so a figure is the same whichever way it was asked for. Bad
input raises hlbench.errors.UsageError with the CLI's one-line message. `import hlbench` stays
light (the worker imports it): pandas, the runner and the comparison code load inside the
functions, on first use. docs/api.md has a worked example.
"""

from __future__ import annotations

import fnmatch
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hlbench.errors import UsageError

if TYPE_CHECKING:
    import pandas as pd

    from hlbench.comparison.render import Report
    from hlbench.comparison.verdicts import Thresholds

PathLike = str | os.PathLike[str]
EXIT_OK, EXIT_FAILED_CELLS = 0, 1


@dataclass(frozen=True)
class Run:
    """What `hlbench.run` did: the records file (every record of the run, resumed ones too) and
    the records this call wrote."""

    suite: str
    records_path: Path
    run_id: str
    records: list[dict[str, Any]] = field(repr=False)

    @property
    def exit_code(self) -> int:
        """As `hlbench run`: 0 every cell ok or skipped, 1 some cell failed (oom, error, ...)."""
        failed = [r for r in self.records if r.get("status") not in ("ok", "skipped")]
        return EXIT_FAILED_CELLS if failed else EXIT_OK

    @property
    def frame(self) -> pd.DataFrame:
        """The records file as the tidy table of `hlbench.load` (read afresh on each access)."""
        return load(self.records_path)

    def report(self, output: PathLike | None = None, **options: Any) -> Path:
        """`hlbench.report` of this run (default: <run-id>.md beside the records)."""
        return report(self.records_path, output, **options)


def run(
    suite: PathLike,
    *,
    results_dir: PathLike = "results",
    only: str | Sequence[str] | None = None,
    resume: PathLike | None = None,
    telemetry: bool | None = None,
    profile: bool | None = None,
    progress: bool = False,
) -> Run:
    """Run a suite as `hlbench run` does: every cell in a fresh worker process, one record each,
    appended to results_dir/<suite>/<run-id>.jsonl (or to `resume`, running only the cells
    without an ok record there). `only`: cell-id globs; `telemetry`/`profile` None: the suite's
    settings; `progress`: a progress bar on stderr. Multi-GPU placement (`--devices`,
    `--node-rank`) is the CLI's. Ctrl-C raises KeyboardInterrupt; the file is resumable."""
    from hlbench.suite import load_suite
    from hlbench.suite.shipped import resolve
    from hlbench.sweep import runner
    from hlbench.sweep.plan import plan

    loaded = select_cells(load_suite(resolve(suite)), [only] if isinstance(only, str) else only)
    check_frameworks(str(suite), loaded)
    records_path, run_id, done = _records_file(loaded, Path(results_dir), resume)
    tasks = plan(loaded, done)
    if not tasks:  # every cell already has an ok record in the --resume file
        return Run(loaded.name, records_path, run_id, [])
    try:
        records = _run_tasks(loaded, tasks, records_path, run_id, telemetry, profile, progress)
    except runner.Interrupted:
        raise KeyboardInterrupt(
            f"interrupted; records so far in {records_path} (resume=... continues it)"
        ) from None
    return Run(loaded.name, records_path, run_id, records)


def select_cells(suite: Any, only: Sequence[str] | None, option: str = "only") -> Any:
    """The suite keeping only the cells whose id matches a glob of `only` (all without one); a
    UsageError naming `option` when none does."""
    if only:
        cells = [c for c in suite.cells if any(fnmatch.fnmatchcase(c.id, g) for g in only)]
        if not cells:
            raise UsageError(
                f"{option} {' '.join(only)}: matches none of the {len(suite.cells)} cells"
            )
        suite.cells = cells
    return suite


def check_frameworks(given: str, suite: Any) -> None:
    """Every backend's framework is installed here, else a UsageError saying how to install it."""
    from hlbench.backends import get_spec

    for name in suite.config.backends:
        spec = get_spec(name)
        if not spec.framework_installed():
            raise UsageError(
                f"{given}: backends: {name!r} needs the {spec.framework!r} package, which is not "
                f"installed here; {spec.install_hint}"
            )


def _records_file(
    suite: Any, results_dir: Path, resume: PathLike | None
) -> tuple[Path, str, set[tuple[str, int]]]:
    from hlbench.sweep.plan import completed
    from hlbench.sweep.runner import new_run_id

    if resume is not None:
        path = Path(resume)
        if not path.is_file():
            raise UsageError(f"resume {path}: no such records file")
        return path, path.stem, completed(path, suite)
    run_id = new_run_id()
    return results_dir / suite.name / f"{run_id}.jsonl", run_id, set()


def _run_tasks(
    suite: Any,
    tasks: list[Any],
    records_path: Path,
    run_id: str,
    telemetry: bool | None,
    profile: bool | None,
    progress: bool,
) -> list[dict[str, Any]]:
    from hlbench.sweep.plan import RunOptions
    from hlbench.sweep.progress import Progress
    from hlbench.sweep.runner import check_results_path, run_tasks
    from hlbench.telemetry.collect import TelemetryConfig

    check_results_path(records_path)
    bar = Progress(tasks, enabled=progress)
    sampling = None
    if telemetry is not None:  # on: the suite's interval; off: no sampler at all
        interval = suite.config.telemetry.interval_s
        sampling = TelemetryConfig(enabled=telemetry, interval_s=interval)
    options = RunOptions(
        records_path=records_path,
        run_id=run_id,
        telemetry=sampling,
        profile=profile,
        on_start=bar.start,
        on_record=bar.record,
    )
    try:
        return run_tasks(suite, tasks, options)
    finally:
        bar.close()


def load(paths: PathLike | Sequence[PathLike]) -> pd.DataFrame:
    """Records files or directories (one path, str or Path, or several) as one tidy DataFrame:
    one row per cell and repeat, units in the column names (see hlbench.results)."""
    from hlbench.results import load as load_cells

    return load_cells(paths)


@dataclass(frozen=True)
class Comparison:
    """What `hlbench.compare` found: the exit code `hlbench compare` would return, one verdict per
    common cell and metric (`frame`), and the report it prints (`render`)."""

    exit_code: int  # 0 unchanged/improved, 1 regressed or failed, 2 incomparable, 3 inconclusive
    verdict: str  # one word for the whole comparison
    error: str | None  # why nothing was compared (exit 2), else None
    notes: list[str]  # which run an input holding several was reduced to
    report: Report = field(repr=False)
    warnings: list[str] = field(default_factory=list)  # a sharded run's missing or doubled shards
    elapsed_s: float = 0.0  # how long the comparison took (JUnit's time attribute)

    @property
    def frame(self) -> pd.DataFrame:
        """One row per common cell and metric: verdict, medians, change, p, CI, noise floor."""
        import pandas as pd

        results = self.report.comparison.results if self.report.comparison else []
        return pd.DataFrame([r.to_dict() for r in results])

    def render(self, format: str = "text") -> str:
        """The report as `hlbench compare --format` prints it: text, md, json or junit."""
        from hlbench.comparison.render import RENDERERS

        if format == "junit":  # a CI's test view: one test case per cell and metric
            from hlbench.export.to_junit import render_junit

            return render_junit(self.report, self.elapsed_s)
        if format not in RENDERERS:
            raise UsageError(f"format {format!r}: choose from {', '.join(RENDERERS)}")
        return RENDERERS[format](self.report)


def compare(
    baseline: PathLike,
    candidate: PathLike,
    *,
    metrics: str | Sequence[str] | None = None,
    thresholds: Thresholds | None = None,
    noise: PathLike | None = None,
    run_ids: Sequence[str] = (),
    force: bool = False,
) -> Comparison:
    """`hlbench compare BASELINE CANDIDATE`: records files or run directories, cells matched by
    content hash. `metrics`: names (default tokens_per_s) or "all"; `thresholds`: alpha, threshold
    and runs needed (hlbench.comparison.verdicts.Thresholds); `noise`: A/A noise floors (default:
    those stored with a baseline directory); `run_ids`: runs to use of an input holding several
    ("all" pools them); `force`: compare runs whose environments differ."""
    from hlbench.comparison import baseline as stored
    from hlbench.comparison import noise as noise_files
    from hlbench.comparison.comparability import differences, load_run
    from hlbench.comparison.render import Report
    from hlbench.comparison.verdicts import DEFAULT_THRESHOLDS

    started_s = time.perf_counter()
    names, limits = metric_names(metrics), thresholds or DEFAULT_THRESHOLDS
    base_path, cand_path = Path(baseline), Path(candidate)
    base, cand = load_run(base_path, list(run_ids)), load_run(cand_path, list(run_ids))
    warnings = [*base.warnings, *cand.warnings]
    notes = [r.note for r in (base, cand) if r.note] + warnings
    calibration = noise_files.load(Path(noise)) if noise else stored.noise_of(base_path)
    diff = differences(base, cand)
    outcome, code, message = _verdicts(base, cand, names, limits, calibration, diff, force)
    source = f"{noise or base_path} ({len(calibration.run_ids)} A/A runs)" if calibration else None
    runs = (base.run_ids, cand.run_ids)
    fields = (str(base_path), str(cand_path), names, limits, diff, force, outcome, code, message)
    report_ = Report(*fields, runs, source, notes)
    error = None
    if code == 2:
        fatal = "; ".join(diff.fatal)
        error = message or f"the runs are not comparable: {fatal} (use force to compare anyway)"
    elapsed_s = time.perf_counter() - started_s
    return Comparison(code, report_.verdict, error, notes, report_, warnings, elapsed_s)


def _verdicts(
    base: Any, cand: Any, metrics: list[str], limits: Any, calibration: Any, diff: Any, force: bool
) -> tuple[Any, int, str]:
    """(the RunComparison or None, the exit code, why nothing was compared)."""
    from hlbench.comparison.runs import compare_runs
    from hlbench.comparison.verdicts import EXIT_INCOMPARABLE, NOT_AVAILABLE, exit_code

    if diff.fatal and not force:
        return None, EXIT_INCOMPARABLE, ""
    floors = (
        {(f.cell_hash, f.metric): f.noise_floor for f in calibration.floors}
        if calibration
        else None
    )
    outcome = compare_runs(base.records, cand.records, metrics, limits, floors)
    if not outcome.results and not outcome.not_run:
        return outcome, EXIT_INCOMPARABLE, "no cell is common to both runs (different suites?)"
    if not [v for v in outcome.verdicts() if v != NOT_AVAILABLE]:  # a guard that compared nothing
        message = f"nothing to compare: no common cell has {', '.join(metrics)} on both sides"
        return outcome, EXIT_INCOMPARABLE, message
    return outcome, exit_code(outcome.verdicts()), ""


def metric_names(metrics: str | Sequence[str] | None) -> list[str]:
    """Metric names as given ("all": every one), checked; default tokens_per_s."""
    from hlbench.comparison.metrics import DEFAULT_METRIC, METRICS

    names = [metrics] if isinstance(metrics, str) else list(metrics or [DEFAULT_METRIC])
    if "all" in names:
        return list(METRICS)
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise UsageError(f"metric {unknown[0]}: unknown; choose from {', '.join(METRICS)}, all")
    return list(dict.fromkeys(names))  # keep order, drop repeats


def report(
    paths: PathLike | Sequence[PathLike],
    output: PathLike | None = None,
    *,
    loss_tolerance: float | None = None,
) -> Path:
    """`hlbench report`: a markdown report of records files or directories with PNG plots in
    <stem>_plots/ beside it. Default output: the first records file with .md, beside it."""
    from hlbench.reporting import write_report
    from hlbench.reporting.tolerance import DEFAULT_TOLERANCE_NATS
    from hlbench.results import expand_paths

    files = expand_paths(paths)
    out = Path(output) if output is not None else files[0].with_suffix(".md")
    if out.suffix != ".md":
        raise UsageError(f"output {out}: the report is markdown; give a .md path")
    tolerance = DEFAULT_TOLERANCE_NATS if loss_tolerance is None else loss_tolerance
    if tolerance < 0:
        raise UsageError(f"loss_tolerance {tolerance}: must be ≥ 0")
    given = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    return write_report([Path(p) for p in given], out, tolerance)
