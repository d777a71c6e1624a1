"""Named baselines: the last accepted run of a suite on one machine type, kept for `hlbench
compare`.

Layout, under the baselines directory (`--dir`, else `$HLBENCH_BASELINES_DIR`, else
`results/baselines`):

    <name>/records.jsonl     the run's current cell records (last per cell and repeat)
    <name>/baseline.json     what was saved, when, from where, and the run's environment
    <name>/noise.json        optional: this runner's A/A noise floors (hlbench.comparison.noise)
    <name>/history/<saved_at>/   earlier versions, moved aside when a new run is promoted

A baseline directory holds exactly one records file, so `hlbench compare <dir>/<name> CANDIDATE`
reads it like any run directory. The default name, `<suite>--<machine>`, encodes the machine type
(the GPU models, or the CPU model of a GPU-less run), so a runner compares against the last accepted
run of its own kind of machine and never against another's.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hlbench.comparison import noise
from hlbench.comparison.comparability import Run, environment, load_run
from hlbench.comparison.metrics import METRICS, run_estimates
from hlbench.comparison.runs import by_cell, statuses
from hlbench.errors import UsageError
from hlbench.records import environment as env
from hlbench.records import identity

DEFAULT_DIR = Path("results/baselines")
RECORDS_NAME, META_NAME, HISTORY_NAME = "records.jsonl", "baseline.json", "history"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def baselines_dir(arg: Path | None) -> Path:
    return arg or Path(os.environ.get("HLBENCH_BASELINES_DIR") or DEFAULT_DIR)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def machine_type(run: Run) -> str:
    """'nvidia-h200', '2x-nvidia-h100-80gb-hbm3', or 'cpu-amd-epyc' for a GPU-less run."""
    env = environment(run.records)
    gpus = [g for g in env["gpu_models"] if g != "none"]
    if gpus:
        names = gpus[0].split(", ")  # one run: one machine; a mixed file is caught by compare
        count = f"{len(names)}x-" if len(names) > 1 else ""
        return count + _slug(names[0]) + ("-mixed" if len(set(names)) > 1 else "")
    cpu = env["cpu_model"][0] if env["cpu_model"] else "unknown"
    return "cpu-" + _slug(cpu)


def default_name(run: Run) -> str:
    suites = sorted({str(identity.suite(r)) for r in run.records if identity.suite(r)})
    return f"{_slug(suites[0]) if suites else 'run'}--{machine_type(run)}"


def check_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise UsageError(
            f"baseline name {name!r}: use letters, digits, '.', '_' and '-' (at most 128), "
            "starting with a letter or digit"
        )
    return name


def save(
    records: Path,
    name: str | None,
    directory: Path,
    note: str | None = None,
    run_ids: tuple[str, ...] = (),
    noise_file: Path | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Store RECORDS (the runs `run_ids`, else its latest run) as baseline NAME, with the A/A
    noise floors of `noise_file` when given; an earlier version moves to history/.
    (dir, metadata); metadata["picked"] says which run was taken when RECORDS held several."""
    run = load_run(records, run_ids)
    calibration = noise.load(noise_file) if noise_file else None
    cells = by_cell(run.records)
    ok = [c for c in cells.values() if c.ok]
    if not ok:
        raise UsageError(f"{run.path}: no cell ran ok; such a run cannot be a baseline")
    if calibration and not {f.cell_hash for f in calibration.floors} & set(cells):
        raise UsageError(f"{noise_file}: its noise floors are of other cells than {run.path}'s")
    name = check_name(name or default_name(run))
    target = directory / name
    saved_at = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    meta = {
        "name": name,
        "saved_at": saved_at,
        "source": str(run.path),
        "run_ids": sorted({str(identity.run_id(r)) for r in run.records}),
        "suite": sorted({str(identity.suite(r)) for r in run.records}),
        "machine_type": machine_type(run),
        "environment": environment(run.records),
        "hlbench_git": sorted(
            {json.dumps(env.hlbench_git(r), sort_keys=True) for r in run.records}
        ),
        "cells_ok": len(ok),
        "cells_not_ok": sorted(c.cell_id for c in cells.values() if not c.ok),
        "note": note,
        "noise_runs": calibration.run_ids if calibration else None,
    }
    staging = directory / f".{name}.saving"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    with open(staging / RECORDS_NAME, "w", encoding="utf-8") as f:
        for record in run.records:
            f.write(json.dumps(record, separators=(",", ":")) + "\n")
    (staging / META_NAME).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    if calibration:
        text = json.dumps(calibration.to_json(), indent=2) + "\n"
        (staging / noise.FILE_NAME).write_text(text, encoding="utf-8")
    if target.exists():  # keep the previous acceptance; a rename, so nothing is half-written
        _move_to_history(target, staging)
    staging.rename(target)
    return target, {**meta, "picked": run.note}


def _move_to_history(target: Path, staging: Path) -> None:
    """The current version of a baseline (and its history) into the staged new version's
    history/<saved_at>/."""
    old = _read_meta(target)
    history = staging / HISTORY_NAME
    if (target / HISTORY_NAME).exists():
        shutil.move(str(target / HISTORY_NAME), str(history))
    history.mkdir(exist_ok=True)
    stamp = str(old.get("saved_at") or "")
    if not _NAME_RE.match(stamp) or not stamp.strip("."):  # a damaged or hostile baseline.json
        stamp = "previous"
    previous = history / stamp
    for n in range(1, 1000):  # two promotions within one second: keep both
        if not previous.exists():
            break
        previous = history / f"{stamp}-{n}"
    previous.mkdir()
    for item in (RECORDS_NAME, META_NAME, noise.FILE_NAME):
        if (target / item).exists():
            shutil.move(str(target / item), str(previous / item))
    shutil.rmtree(target)


def _read_meta(path: Path) -> dict[str, Any]:
    """baseline.json's fields; a field of the wrong type (a damaged file) is left out."""
    try:
        meta = json.loads((path / META_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    if not isinstance(meta, dict):
        return {}
    env = meta.get("environment")
    if env is not None and not (
        isinstance(env, dict)
        and all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in env.values())
    ):
        meta.pop("environment")
    return {k: v for k, v in meta.items() if k != "cells" and k != "path"}


def find(name: str, directory: Path) -> Path:
    path = directory / check_name(name)
    if not (path / RECORDS_NAME).is_file():
        known = ", ".join(list_names(directory)) or "none"
        raise UsageError(f"{path}: no such baseline (baselines in {directory}: {known})")
    return path


def list_names(directory: Path) -> list[str]:
    if not directory.is_dir():
        return []
    return sorted(
        p.name
        for p in directory.iterdir()
        if (p / RECORDS_NAME).is_file() and not p.name.startswith(".")
    )


def describe(name: str, directory: Path) -> dict[str, Any]:
    """Metadata plus, per cell, its status and median tokens/s: what `baseline show` prints."""
    path = find(name, directory)
    run = load_run(path / RECORDS_NAME)
    tokens = METRICS["tokens_per_s"]
    cells = []
    calibration = noise.load(path / noise.FILE_NAME) if (path / noise.FILE_NAME).is_file() else None
    for cell in by_cell(run.records).values():
        per_run = run_estimates(cell.ok, tokens)
        floor = calibration.floor(cell.cell_hash, tokens.name) if calibration else None
        cells.append(
            {
                "cell_id": cell.cell_id,
                "cell_hash": cell.cell_hash,
                "repeats_ok": len(cell.ok),
                "status": "ok" if cell.ok else statuses(cell),
                "tokens_per_s_median": statistics.median(per_run) if per_run else None,
                "tokens_per_s_noise_floor": floor,
            }
        )
    return {"path": str(path), **_read_meta(path), "cells": cells}


def noise_of(baseline: Path) -> noise.Calibration | None:
    """The noise floors stored with a baseline directory (or beside its records file), if any."""
    folder = baseline if baseline.is_dir() else baseline.parent
    if not (folder / META_NAME).is_file() or not (folder / noise.FILE_NAME).is_file():
        return None
    return noise.load(folder / noise.FILE_NAME)
