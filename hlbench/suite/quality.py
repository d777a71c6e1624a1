"""Checks of a time-to-target suite that need its cells: a target the corpus can be judged by, and
a step budget whose batches fit in memory (every step's batch is drawn before training)."""

from __future__ import annotations

from pathlib import Path

from hlbench.cell import FIXED_STEPS, BytesData, Cell
from hlbench.errors import UsageError

# tokens of all planned train batches (inputs and targets, int64): 2**26 tokens hold 1 GiB
MAX_PLANNED_TOKENS = 1 << 26


def check_quality(path: Path, cells: list[Cell]) -> None:
    """UsageError for a target the corpus cannot judge or a budget too large to prepare."""
    for cell in cells:
        m = cell.measurement
        if m.mode == FIXED_STEPS:
            return  # the mode is the suite's: every cell has it
        if m.target_excess_nats is not None and isinstance(cell.workload.data, BytesData):
            raise UsageError(
                f"{path}: measurement.target_excess_nats: give target_eval_loss instead; a byte "
                f"corpus (workload {cell.workload.name!r}) has no known entropy floor"
            )
        w = cell.workload
        steps = m.planned_steps(w.global_batch * w.seq_len)
        tokens = steps * w.global_batch * (w.seq_len + 1)
        if tokens > MAX_PLANNED_TOKENS:
            raise UsageError(
                f"{path}: measurement.max_steps: lower max_steps or max_tokens; {tokens} tokens "
                f"of batches would be drawn before training (limit {MAX_PLANNED_TOKENS})"
            )
