"""Child side of a cell: `python -m hlbench.worker CELL_JSON RESULT_JSON`.

A fresh interpreter per cell (spawned by hlbench.sweep.runner), so no framework state, allocator
cache or compiled graph leaks from one cell into the next. It imports exactly one framework, the
cell's. Every Python-level outcome (ok, skipped, oom, error) is written to RESULT_JSON; a worker
that dies without writing it is classified by the parent (crashed, timeout).

Data-parallel cells (hlbench.sweep.launch): every rank runs this module; each writes its own outcome
to RESULT_JSON's `.rank<R>` sibling and rank 0 writes RESULT_JSON itself, with all ranks' figures
combined (hlbench.worker.train). A rank that fails in Python exits 1 after writing its outcome, so
that the launcher stops the group at once instead of leaving its peers blocked in a collective
until the timeout.

A worker dies with the `hlbench run` that started it (hlbench.worker.orphan); a loss that becomes
non-finite without loss scaling fails the cell (hlbench.worker.train.check_finite).
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hlbench.backends import get_spec, load_adapter
from hlbench.cell import Cell
from hlbench.errors import SkipCell
from hlbench.handoff import PROFILE_DIR_ENV, rank_from_env, rank_result_path
from hlbench.techniques.oom import is_oom
from hlbench.worker.orphan import die_with_parent
from hlbench.worker.train import run_cell

TRACEBACK_TAIL_LINES = 30


def execute(
    cell: Cell, report: Callable[[dict[str, Any]], None] = lambda result: None
) -> dict[str, Any]:
    """Run one cell in this process and classify the outcome; never raises for a cell's failure.

    `report(result)` is called with the outcome before the backend leaves its process groups: a
    rank that failed must say so at once, and then not wait for peers that are blocked in a
    collective (a barrier or destroy_process_group would hold it until they time out), so it skips
    the shutdown."""
    backend = None
    result: dict[str, Any] = {"framework_env": None}
    try:
        backend = load_adapter(get_spec(cell.backend))
        # process groups, strategies, logical devices: before the runtime starts
        backend.prepare(cell)
        result["framework_env"] = backend.environment(cell.device)
        profile_dir = os.environ.get(PROFILE_DIR_ENV)  # the runner sets it when profiling is on
        result.update(
            run_cell(cell, backend, Path(profile_dir) if profile_dir else None), status="ok"
        )
        if cell.launch is None or rank_from_env() == 0:  # only the chief's result is written
            result["metrics"].update(_mfu(cell, result))
    except SkipCell as exc:
        result.update(status="skipped", reason=str(exc))
    except Exception as exc:  # every failure of a cell becomes its record
        oom = backend.is_oom(exc) if backend is not None else is_oom(exc)
        # when, so that the parent can tell a data-parallel cell's first failure from its
        # consequences
        result["failed_at_monotonic_s"] = time.monotonic()  # system-wide: comparable across ranks
        result.update(
            status="oom" if oom else "error",
            reason=f"{type(exc).__name__}: {exc}".splitlines()[0][:500],
            error=_error(exc),
        )
    report(result)
    if backend is not None and not (cell.launch and failed(result)):
        _shutdown(backend)
    return result


def failed(result: dict[str, Any]) -> bool:
    return result["status"] in ("oom", "error")


def _shutdown(backend: Any) -> None:
    try:
        backend.shutdown()
    except Exception as exc:
        print(
            f"hlbench.worker: backend shutdown failed: {type(exc).__name__}: {exc}", file=sys.stderr
        )


def _mfu(cell: Cell, result: dict[str, Any]) -> dict[str, Any]:
    """MFU after the measured windows (a CPU calibration must not run while they are timed)."""
    from hlbench.telemetry.calibration import workload_shapes
    from hlbench.telemetry.mfu import mfu_metrics
    from hlbench.workloads import CustomSpec, model_spec

    info = result["backend_info"]
    rows = cell.workload.micro_batch * cell.workload.seq_len
    spec = model_spec(cell)
    # a custom model's own names say nothing of their role: its linear kernels are the matmuls
    shapes = spec.kernel_shapes() if isinstance(spec, CustomSpec) else spec.param_shapes()
    return mfu_metrics(
        get_spec(cell.backend).framework,
        cell.axes["precision"],
        str(info.get("device", "")),
        (result["framework_env"] or {}).get("gpus", []),
        _tokens_per_s_per_device(cell, result),
        info.get("flops_per_token"),
        workload_shapes(shapes, rows),
    )


def _tokens_per_s_per_device(cell: Cell, result: dict[str, Any]) -> float | None:
    """Data parallel on GPUs: MFU is against the peak of all the cell's GPUs, i.e. per GPU. On CPUs
    the ranks of a node share its one calibrated CPU peak: per node."""
    tokens_per_s = result["metrics"].get("tokens_per_s")
    if tokens_per_s is None or not cell.launch:
        return tokens_per_s
    device = str((result.get("backend_info") or {}).get("device", ""))
    on_cpu = "cpu" in device.lower()  # torch "cpu", TF "/CPU:0"
    return tokens_per_s / (cell.launch.nnodes if on_cpu else cell.launch.world_size)


def _error(exc: BaseException) -> dict[str, Any]:
    lines = "".join(traceback.format_exception(exc)).splitlines()
    return {
        "type": type(exc).__name__,
        "message": str(exc)[:2000],
        "traceback_tail": lines[-TRACEBACK_TAIL_LINES:],
    }


def _write_atomically(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, allow_nan=True))
    os.replace(tmp, path)  # the parent sees a whole result or none


def main(argv: list[str]) -> int:
    die_with_parent()  # first: an orphaned worker would hold its device past the cell's timeout
    if len(argv) != 2:
        print("usage: python -m hlbench.worker CELL_JSON RESULT_JSON", file=sys.stderr)
        return 2
    cell = Cell.from_dict(json.loads(Path(argv[0]).read_text()))
    result_path = Path(argv[1])
    if cell.launch is None:
        execute(cell, lambda result: _write_atomically(result_path, result))
        return 0
    rank = rank_from_env()

    def report(result: dict[str, Any]) -> None:
        # every rank's own outcome (the parent names the failing rank from these), the chief's in
        # full
        own = {
            k: result.get(k)
            for k in ("status", "reason", "error", "framework_env", "failed_at_monotonic_s")
        }
        _write_atomically(rank_result_path(result_path, rank), {**own, "rank": rank})
        if rank == 0:
            _write_atomically(result_path, result)

    if failed(execute(cell, report)):
        # Exit now: interpreter teardown could block in a framework's collective machinery (NCCL
        # communicators, tf.distribute's coordination service) while peers wait for this rank.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
