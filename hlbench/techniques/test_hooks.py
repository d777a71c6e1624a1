"""The test-only hooks: environment variables that make a run misbehave on purpose, so the tests can
prove the benchmark notices. Never set them in a real run. This is the one module that reads them;
it imports no framework, so the worker, parity, the backends and techniques.precision all use it.

- HLBENCH_TEST_STEP_DELAY_S=SECONDS: a sleep inside every timed step (after the optimizer step), so
  the end-to-end tests of `hlbench compare` can produce a real, known slowdown;
- HLBENCH_TEST_KILL_RANK=R:S[:oom]: rank R of a data-parallel cell kills itself with SIGKILL at step
  S (a rank dying mid-run), or with `:oom` raises MemoryError there instead (a rank running out of
  memory);
- HLBENCH_TEST_PARITY_PERTURB=BACKEND:PARAM: parity's probe on BACKEND multiplies parameter PARAM's
  initial weights by 1.001, as a weight-loading bug would;
- HLBENCH_TEST_PRECISION_MISMATCH=1 (anything but empty or 0): the backend labels the cell with its
  precision but does not apply the compute dtype (fp32 compute for the reduced levels, bf16 for
  fp32), so the first step's check must fail the cell as `error`;
- HLBENCH_TEST_PRUNE_EVENT_DELAY_S=SECONDS: a sleep inside every pruning event (after its masks are
  applied), so the tests can prove that events stay out of the measured step and window times;
- HLBENCH_TEST_NONFINITE_STEP=k: the gradients of optimizer step k (0-based count of train_step
  calls) are made non-finite after backward, so fp16's loss scaling must skip that step.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

STEP_DELAY_ENV = "HLBENCH_TEST_STEP_DELAY_S"
KILL_RANK_ENV = "HLBENCH_TEST_KILL_RANK"
PARITY_PERTURB_ENV = "HLBENCH_TEST_PARITY_PERTURB"
PRECISION_MISMATCH_ENV = "HLBENCH_TEST_PRECISION_MISMATCH"
NONFINITE_STEP_ENV = "HLBENCH_TEST_NONFINITE_STEP"
PRUNE_EVENT_DELAY_ENV = "HLBENCH_TEST_PRUNE_EVENT_DELAY_S"


@dataclass(frozen=True)
class KillSpec:
    """Rank `rank` fails at step `step`: SIGKILL, or MemoryError when `oom`."""

    rank: int
    step: int
    oom: bool


def step_delay_s() -> float:
    """Seconds to sleep in every timed step; 0.0 (no delay) when unset or empty."""
    return float(os.environ.get(STEP_DELAY_ENV, "0") or 0)


def prune_event_delay_s() -> float:
    """Seconds to sleep in every pruning event; 0.0 (no delay) when unset or empty."""
    return float(os.environ.get(PRUNE_EVENT_DELAY_ENV, "0") or 0)


def kill_rank() -> KillSpec | None:
    """The rank that is to fail and when, or None (the normal case)."""
    rank, _, at = os.environ.get(KILL_RANK_ENV, "").partition(":")
    if not rank:
        return None
    step, _, how = at.partition(":")
    return KillSpec(rank=int(rank), step=int(step), oom=how == "oom")


def parity_perturb() -> tuple[str, str] | None:
    """(backend, parameter) whose initial weights parity's probe perturbs, or None."""
    backend, _, param = os.environ.get(PARITY_PERTURB_ENV, "").partition(":")
    return (backend, param) if param else None


def precision_mismatch() -> bool:
    """Whether the backends are to run other dtypes than the precision label says."""
    return os.environ.get(PRECISION_MISMATCH_ENV, "") not in ("", "0")


def nonfinite_step() -> int | None:
    """The step whose gradients are made non-finite, or None (the normal case)."""
    value = os.environ.get(NONFINITE_STEP_ENV, "").strip()
    return int(value) if value else None


def wrap_step(step: Callable[[int], None], rank: int) -> Callable[[int], None]:
    """`step(i)` with this rank's delay and kill hooks around it; `step` itself when neither is set,
    so a real run's timed step carries no hook code. Built once, before the timed loop."""
    delay_s = step_delay_s()
    kill = kill_rank()
    if kill is not None and kill.rank != rank:
        kill = None
    if not delay_s and kill is None:
        return step

    def hooked(i: int) -> None:
        if kill is not None and i == kill.step:
            if kill.oom:
                raise MemoryError(f"simulated: rank {rank} cannot allocate at step {i}")
            os.kill(os.getpid(), signal.SIGKILL)
        step(i)
        if delay_s:
            time.sleep(delay_s)

    return hooked
