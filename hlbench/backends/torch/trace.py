"""PyTorch: torch.profiler around profiled steps → a Chrome/Perfetto trace and top-operator tables;
on CUDA also an allocator-history memory snapshot of one step. Only the torch trainer imports
it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

TOP_OPS = 15  # rows per top-operator table
TRACED_STEPS = 2  # the first traced step can carry profiler start-up; two give steadier tables


def trace_steps(trainer: Any, batch: Any, out_dir: Path) -> dict[str, Any]:
    import torch
    from torch.profiler import ProfilerActivity, profile

    out_dir.mkdir(parents=True, exist_ok=True)
    cuda = trainer.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    trainer.sync()
    with profile(activities=activities, record_shapes=False) as prof:
        for _ in range(TRACED_STEPS):
            trainer.train_step(batch)
        trainer.sync()
    trace_path = out_dir / "torch_trace.json"
    prof.export_chrome_trace(str(trace_path))
    averages = prof.key_averages()

    def table(attr: str) -> list[dict[str, Any]]:
        rows = sorted(averages, key=lambda e: getattr(e, attr, 0.0), reverse=True)[:TOP_OPS]
        return [
            {
                "name": e.key,
                "self_s": getattr(e, attr, 0.0) / 1e6 / TRACED_STEPS,
                "calls": e.count // TRACED_STEPS,
            }
            for e in rows
            if getattr(e, attr, 0.0) > 0
        ]

    # a GPU step's time is its ops' self device time; on the CPU their self CPU time is the work
    device_attr = "self_device_time_total"
    op_attr = device_attr if cuda else "self_cpu_time_total"
    op_self_s = {}
    for e in averages:
        op_self_s[e.key] = op_self_s.get(e.key, 0.0) + getattr(e, op_attr, 0.0) / 1e6 / TRACED_STEPS
    out: dict[str, Any] = {
        "trace_path": str(trace_path),
        "top_ops": {
            "by_self_cpu": table("self_cpu_time_total"),
            "by_self_device": table(device_attr) if cuda else [],
        },
        "op_self_s": {k: v for k, v in op_self_s.items() if v > 0},
        "time_basis": "self device time per step (CUDA)" if cuda else "self CPU time per step",
        "memory_snapshot_path": _memory_snapshot(trainer, batch, out_dir) if cuda else None,
        "notes": f"torch.profiler over {TRACED_STEPS} steps; times per step"
        + ("" if cuda else "; CPU device: no device times, no memory snapshot"),
    }
    torch.cuda.empty_cache() if cuda else None
    return out


def _memory_snapshot(trainer: Any, batch: Any, out_dir: Path) -> str | None:
    """The caching allocator's history over one step (open it at https://pytorch.org/memory_viz)."""
    import torch

    record = getattr(torch.cuda.memory, "_record_memory_history", None)
    if record is None:
        return None
    path = out_dir / "torch_memory_snapshot.pickle"
    record(max_entries=100_000)
    try:
        trainer.train_step(batch)
        trainer.sync()
        torch.cuda.memory._dump_snapshot(str(path))
    finally:
        record(enabled=None)
    return str(path)
