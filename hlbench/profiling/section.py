"""The record's `profile` section: the phase breakdown, then the framework's trace and
categories."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from hlbench.profiling.categories import category_shares
from hlbench.profiling.phases import profile_pass


def profile_section(trainer: Any, make_batch: Callable[[], Any], out_dir: Path) -> dict[str, Any]:
    """Phases (always), then the profiler trace where the backend has one; run after the measured
    windows and the eval, so nothing here reaches the record's timing, metrics or losses."""
    try:
        section: dict[str, Any] = profile_pass(trainer, make_batch)
        notes = [
            f"phases: median of {section['steps']} profiled steps, a device sync around each "
            f"phase; "
            "step_s = host batch + the fused train_step timed in the same pass (fused_step_s)"
        ]
    except NotImplementedError as exc:  # a backend without the breakdown still runs its cell
        section = dict.fromkeys(("phases_s", "phase_shares", "step_s", "fused_step_s", "steps"))
        notes = [f"no phase breakdown: {exc}"]
    section.update(
        trace_path=None,
        top_ops=None,
        category_shares=None,
        other_share=None,
        memory_snapshot_path=None,
        time_basis=None,
    )
    try:
        trace = trainer.profile_trace(make_batch(), out_dir)
    except NotImplementedError as exc:
        notes.append(f"no profiler trace: {exc}")
    else:
        shares = category_shares(trace["op_self_s"])
        section.update(
            trace_path=trace["trace_path"],
            top_ops=trace["top_ops"],
            category_shares=shares,
            other_share=shares.get("other"),
            memory_snapshot_path=trace.get("memory_snapshot_path"),
            time_basis=trace.get("time_basis"),
            trace_files=trace.get("trace_files"),
        )
        notes.append(trace["notes"])
    section["notes"] = "; ".join(notes)
    return section
