"""Records into MLflow: an experiment per suite, a parent run per hlbench run id, and nested under
it a run per cell record (cell × repeat) with the cell's definition as params, the record's figures
as metrics, step time and train loss as metric history (step = optimizer step), and the record
(JSON), the worker's log and the telemetry samples as artifacts.

Re-exporting is idempotent: every run is tagged with its record's identity (run id, cell hash,
repeat) and content hash; a record already in the experiment is skipped, one whose content changed
(a resumed run replaced a failure) replaces its earlier run, which is deleted. mlflow is imported
only here, inside the functions, so the extra is needed only to export.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hlbench.errors import UsageError
from hlbench.export.source import (
    CellRun,
    by_suite_run,
    ended_unix_s,
    figures,
    parameters,
    side_files,
    started_unix_s,
    step_series,
    tags,
)

# Where runs go without --tracking-uri or $MLFLOW_TRACKING_URI: a local store in this directory
# (SQLite, MLflow's own default backend since the file store went into maintenance mode).
DEFAULT_STORE_DIR = Path("mlruns")
INSTALL_HINT = "pip install 'hlbench[mlflow]' (or pip install mlflow)"
KIND_TAG, CELL_KIND, SUITE_RUN_KIND = "hlbench.kind", "cell", "suite-run"
DIGEST_TAG = "hlbench.record_sha256"
# The limits one log_batch call takes in every MLflow store.
_METRICS_PER_BATCH, _PARAMS_PER_BATCH = 1000, 100
_STATUS = {"ok": "FINISHED", "skipped": "FINISHED"}  # oom, timeout, error, crashed: FAILED
_PLAIN_ID = re.compile(r"[\w.:+-]+")


@dataclass
class Outcome:
    """What an export did, for the one line the CLI prints."""

    tracking_uri: str
    logged: int = 0
    unchanged: int = 0
    replaced: int = 0
    experiments: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{self.logged} cell run(s) logged"]
        parts += [f"{self.replaced} replaced (the record changed)"] if self.replaced else []
        parts += [f"{self.unchanged} already there"] if self.unchanged else []
        names = ", ".join(self.experiments)
        return f"mlflow: {'; '.join(parts)} in experiment(s) {names} at {self.tracking_uri}"


def resolve_store(tracking_uri: str | None) -> tuple[str, str | None]:
    """(tracking URI, artifact location for new experiments): the URI given, else
    $MLFLOW_TRACKING_URI, else the local store ./mlruns; a plain path (no scheme) is a local store
    in that directory: mlflow.db (SQLite) and artifacts/ below it."""
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or str(DEFAULT_STORE_DIR)
    if ":" in uri or uri == "databricks":
        return uri, None
    directory = Path(uri).expanduser().resolve()
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"--tracking-uri {uri}: not a directory (a local store is a directory)")
    directory.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{directory / 'mlflow.db'}", (directory / "artifacts").as_uri()


def check_installed() -> None:
    """A UsageError naming the extra when mlflow is not importable (before anything runs)."""
    import importlib.util

    if importlib.util.find_spec("mlflow") is None:
        raise UsageError(f"exporting to MLflow needs the mlflow package: {INSTALL_HINT}")


def export(
    cells: Sequence[CellRun],
    tracking_uri: str | None = None,
    experiment: str | None = None,
    report: Path | None = None,
) -> Outcome:
    """Log the cells, grouped by suite run; `report`: a markdown report (and its `<stem>_plots/`)
    to attach to every suite run's parent run."""
    uri, artifact_root = resolve_store(tracking_uri)
    client_class, errors = _mlflow()  # importing mlflow sets its loggers up: quiet them after
    with _quiet_mlflow():
        outcome = Outcome(uri)
        try:
            client = client_class(tracking_uri=uri)
            for (suite, run_id), group in by_suite_run(cells).items():
                name = experiment or suite
                experiment_id = _experiment(client, name, artifact_root)
                _export_run(client, experiment_id, run_id, group, report, outcome)
                if name not in outcome.experiments:
                    outcome.experiments.append(name)
        except errors as exc:  # a store that refuses (unreachable server, bad URI, permissions)
            raise UsageError(f"mlflow ({uri}): {_first_line(exc)}{_hint(uri)}") from None
    return outcome


def _mlflow() -> tuple[Any, tuple[type[BaseException], ...]]:
    try:
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient
    except ImportError as exc:
        raise UsageError(
            f"exporting to MLflow needs the mlflow package ({exc.name} not importable): "
            f"{INSTALL_HINT}"
        ) from None
    return MlflowClient, (MlflowException, OSError)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:160]


def _hint(uri: str) -> str:
    # MLflow refuses its file store unless told otherwise; a directory is hlbench's local store
    if uri.startswith("file:"):
        return " (for a local store give a directory: --tracking-uri mlruns)"
    return ""


@contextmanager
def _quiet_mlflow() -> Iterator[None]:
    # A new SQLite store says at INFO that it creates its tables (mlflow, alembic) on stderr;
    # hlbench prints its own one-line summary instead.
    loggers = [logging.getLogger(name) for name in ("alembic", "mlflow")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _experiment(client: Any, name: str, artifact_root: str | None) -> str:
    found = client.get_experiment_by_name(name)
    if found is None:
        location = f"{artifact_root}/{_safe(name)}" if artifact_root else None
        return str(client.create_experiment(name, artifact_location=location))
    if found.lifecycle_stage != "active":
        raise UsageError(
            f"mlflow experiment {name!r} is deleted in this store; restore it "
            "(mlflow experiments restore) or choose another with --experiment"
        )
    return str(found.experiment_id)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "_"


def _existing(client: Any, experiment_id: str, run_id: str) -> tuple[Any, dict[str, Any]]:
    """This suite run's parent run (or None) and its cell runs already in the experiment, by
    record key."""
    from mlflow.entities import ViewType

    parent, children, token = None, {}, None
    while True:
        page = client.search_runs(
            [experiment_id],
            filter_string=_filter(run_id),
            run_view_type=ViewType.ACTIVE_ONLY,
            max_results=1000,
            page_token=token,
        )
        for run in page:
            if run.data.tags.get("hlbench.run_id") != run_id:
                continue
            kind = run.data.tags.get(KIND_TAG)
            if kind == SUITE_RUN_KIND and parent is None:
                parent = run
            elif kind == CELL_KIND:
                children[run.data.tags.get("hlbench.record_key")] = run
        token = page.token
        if not token:
            return parent, children


def _filter(run_id: str) -> str:
    # MLflow filter strings quote with '...' and have no escape; an odd run id (a hand-edited
    # file) is matched on the client instead
    return f"tags.`hlbench.run_id` = '{run_id}'" if _PLAIN_ID.fullmatch(run_id) else ""


def _export_run(
    client: Any,
    experiment_id: str,
    run_id: str,
    group: list[CellRun],
    report: Path | None,
    outcome: Outcome,
) -> None:
    parent, existing = _existing(client, experiment_id, run_id)
    if parent is None:
        parent = _create_parent(client, experiment_id, run_id, group)
    parent_id = parent.info.run_id
    repeats = Counter(cell.record.get("cell_hash") for cell in group)
    for cell in group:
        earlier = existing.get(cell.key)
        if earlier is not None and earlier.data.tags.get(DIGEST_TAG) == cell.digest:
            outcome.unchanged += 1
            continue
        if earlier is not None:
            client.delete_run(earlier.info.run_id)
            outcome.replaced += 1
        else:
            outcome.logged += 1
        _log_cell(client, experiment_id, parent_id, cell, repeats[cell.record.get("cell_hash")])
    if report is not None:
        _log_report(client, parent_id, report)
    failed = any(cell.status not in _STATUS for cell in group)
    end_ms = int(max(ended_unix_s(c.record) for c in group) * 1000)
    client.set_terminated(parent_id, "FAILED" if failed else "FINISHED", end_time=end_ms)


def _create_parent(client: Any, experiment_id: str, run_id: str, group: list[CellRun]) -> Any:
    first = group[0]
    run_tags = {
        KIND_TAG: SUITE_RUN_KIND,
        "hlbench.run_id": run_id,
        "hlbench.suite": first.suite,
        "hlbench.records_file": str(first.path),
        "mlflow.source.name": "hlbench",
    }
    start_ms = int(min(started_unix_s(c.record) for c in group) * 1000)
    return client.create_run(experiment_id, start_time=start_ms, tags=run_tags, run_name=run_id)


def _log_cell(client: Any, experiment_id: str, parent_id: str, cell: CellRun, repeats: int) -> None:
    name = cell.cell_id if repeats <= 1 else f"{cell.cell_id} (repeat {cell.repeat})"
    run_tags = {
        **tags(cell),
        DIGEST_TAG: "",  # set last: a run an interrupted export left unfinished is replaced
        KIND_TAG: CELL_KIND,
        "mlflow.parentRunId": parent_id,
        "mlflow.source.name": "hlbench",
    }
    start_ms = int(started_unix_s(cell.record) * 1000)
    run = client.create_run(experiment_id, start_time=start_ms, tags=run_tags, run_name=name)
    run_id = run.info.run_id
    _log_values(client, run_id, cell)
    client.log_dict(run_id, cell.record, "record.json")
    for folder, path in side_files(cell).items():
        client.log_artifact(run_id, str(path), folder)
    status = _STATUS.get(cell.status, "FAILED")
    client.set_tag(run_id, DIGEST_TAG, cell.digest)
    client.set_terminated(run_id, status, end_time=int(ended_unix_s(cell.record) * 1000))


def _log_values(client: Any, run_id: str, cell: CellRun) -> None:
    from mlflow.entities import Metric, Param

    end_ms = int(ended_unix_s(cell.record) * 1000)
    metrics = [Metric(key=k, value=v, timestamp=end_ms, step=0) for k, v in figures(cell).items()]
    for key, series in step_series(cell).items():
        metrics += [
            Metric(key=key, value=value, timestamp=int(t * 1000), step=step)
            for step, value, t in zip(series.steps, series.values, series.times_s)
        ]
    params = [Param(k, v) for k, v in parameters(cell.record).items()]
    for i in range(0, len(params), _PARAMS_PER_BATCH):
        client.log_batch(run_id, params=params[i : i + _PARAMS_PER_BATCH])
    for i in range(0, len(metrics), _METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=metrics[i : i + _METRICS_PER_BATCH])


def _log_report(client: Any, parent_id: str, report: Path) -> None:
    """The markdown report and its plots, under report/ of the suite run's parent run."""
    if not report.is_file():
        raise UsageError(f"--report {report}: no such report file")
    client.log_artifact(parent_id, str(report), "report")
    plots = report.parent / f"{report.stem}_plots"
    if plots.is_dir():
        client.log_artifacts(parent_id, str(plots), f"report/{plots.name}")
