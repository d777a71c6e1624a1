"""Records into TensorBoard event files: one TensorBoard run (directory) per cell record,
DIR/<suite>/<run id>/<cell id>/r<repeat>, with the per-step series (`step/step_time_s`,
`step/train_loss_nats`, step = optimizer step from the first warmup step, wall time estimated from
the step times), the record's figures (`summary/<name>` at step 0), the cell's definition and
outcome as text (`cell`), and its axes as an HParams session, so that the cells compare as a table
in TensorBoard's HParams dashboard.

Written with TensorBoard's own protos (hlbench.export.tb_events), never loading a framework.
Re-exporting is idempotent: each directory keeps the identity and content hash of the record it
holds; the same record is skipped, a changed one (a resumed run replaced a failure) replaces the
directory's event files.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hlbench.errors import UsageError
from hlbench.export.source import (
    CellRun,
    ended_unix_s,
    figures,
    parameters,
    started_unix_s,
    step_series,
)
from hlbench.records import identity

INSTALL_HINT = "pip install 'hlbench[tensorboard]' (or pip install tensorboard)"
MARKER = ".hlbench-record.json"  # which record a directory holds
EVENT_FILE_PREFIX = "events.out.tfevents."


@dataclass
class Outcome:
    out_dir: Path
    written: int = 0
    unchanged: int = 0
    replaced: int = 0

    def summary(self) -> str:
        parts = [f"{self.written} cell run(s) written"]
        parts += [f"{self.replaced} replaced (the record changed)"] if self.replaced else []
        parts += [f"{self.unchanged} already there"] if self.unchanged else []
        where = f"{self.out_dir} (view: tensorboard --logdir {self.out_dir})"
        return f"tensorboard: {'; '.join(parts)} in {where}"


def check_installed() -> None:
    """A UsageError naming the extra when tensorboard is not importable."""
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        raise UsageError(f"exporting to TensorBoard needs the tensorboard package: {INSTALL_HINT}")


def cell_dir(out_dir: Path, cell: CellRun) -> Path:
    """DIR/<suite>/<run id>/<cell id's parts>/r<repeat>; every part made a safe directory name,
    so that no record can write outside DIR."""
    parts = [cell.suite, cell.run_id, *cell.cell_id.split("/"), f"r{cell.repeat}"]
    return out_dir.joinpath(*(_safe(p) for p in parts))


def _safe(part: str) -> str:
    name = re.sub(r"[^\w.+=,-]", "_", part)[:100]
    return "_" if name in ("", ".", "..") else name


def export(cells: Sequence[CellRun], out_dir: Path) -> Outcome:
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir}: not a directory (TensorBoard's log directory)")
    try:
        from hlbench.export.tb_events import EventFile
    except ImportError as exc:
        raise UsageError(
            f"exporting to TensorBoard needs the tensorboard package ({exc.name} not importable): "
            f"{INSTALL_HINT}"
        ) from None
    outcome = Outcome(out_dir)
    for cell in cells:
        directory = cell_dir(out_dir, cell)
        held = _held(directory)
        if held == {"key": cell.key, "sha256": cell.digest}:
            outcome.unchanged += 1
            continue
        if held is not None or _event_files(directory):
            for old in _event_files(directory):
                old.unlink()
            outcome.replaced += 1
        else:
            outcome.written += 1
        try:
            directory.mkdir(parents=True, exist_ok=True)
            with EventFile(directory) as events:
                _write(events, cell)
            (directory / MARKER).write_text(json.dumps({"key": cell.key, "sha256": cell.digest}))
        except OSError as exc:
            raise UsageError(f"{directory}: cannot write event files ({exc.strerror})") from None
    return outcome


def _held(directory: Path) -> dict[str, str] | None:
    try:
        held = json.loads((directory / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return held if isinstance(held, dict) else None


def _event_files(directory: Path) -> list[Path]:
    return sorted(directory.glob(EVENT_FILE_PREFIX + "*")) if directory.is_dir() else []


def _write(events: Any, cell: CellRun) -> None:
    start, end = started_unix_s(cell.record), ended_unix_s(cell.record)
    events.hparams(hyperparameters(cell), trial_id=cell.key, start_s=start)
    events.text("cell", _cell_text(cell), step=0, wall_time_s=start)
    for name, series in step_series(cell).items():
        for step, value, t in zip(series.steps, series.values, series.times_s):
            events.scalar(f"step/{name}", value, step, t)
    for name, value in figures(cell).items():
        events.scalar(f"summary/{name}", value, 0, end)


def hyperparameters(cell: CellRun) -> dict[str, Any]:
    """The HParams session's values: workload, backend, device and the axes, as the numbers,
    booleans and strings they are (the dashboard filters and sorts by type)."""
    values: dict[str, Any] = {
        "workload": identity.workload_name(cell.record),
        "backend": identity.backend(cell.record),
        "device": identity.device(cell.record),
        "status": cell.status,
        "repeat": cell.repeat,
        **identity.axes(cell.record),
    }
    return {str(k): v for k, v in values.items() if isinstance(v, (bool, int, float, str))}


def _cell_text(cell: CellRun) -> str:
    """The cell's definition and outcome as a markdown table (TensorBoard's text dashboard)."""
    reason = cell.record.get("reason")
    rows = [
        ("cell", cell.cell_id),
        ("suite run", f"{cell.suite} {cell.run_id}"),
        ("repeat", str(cell.repeat)),
        ("status", cell.status + (f": {reason}" if reason else "")),
        *parameters(cell.record).items(),
    ]
    lines = ["| field | value |", "|---|---|"]
    lines += [f"| {k} | {str(v).replace('|', '/')} |" for k, v in rows]
    return "\n".join(lines)
