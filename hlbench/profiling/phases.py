"""Phase breakdown of one optimizer step, framework-neutral.

The trainer times its own phases (Trainer.profile_phases) with a PhaseTimer, which syncs the device
before and after each phase, so a phase's time is the time its work took, not the time it took to
queue. The profile pass (profile_pass) repeats that a few times on a fresh host batch each time, and
times the real (fused) train_step in the same pass: `fused_step_s` is the "separately measured step
time" the phase sums are checked against. Medians over the repeats, so one slow outlier does not
move a share.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

# In step order; a trainer reports only the phases its step has (no mask phase without pruning).
HOST_BATCH = (
    "host_batch"  # host batch preparation and augmentation (NumPy), outside the measured step
)
PHASES = (HOST_BATCH, "host_to_device", "forward", "backward", "mask", "unscale_clip", "optimizer")


class PhaseTimer:
    """Seconds per phase; each phase is bracketed by `sync` so queued device work is counted where
    it ran."""

    def __init__(self, sync: Callable[[], None]) -> None:
        self.sync = sync
        self.seconds: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self.sync()
        t0 = time.perf_counter()
        yield
        self.sync()
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0


def profile_pass(trainer: Any, make_batch: Callable[[], Any], repeats: int = 5) -> dict[str, Any]:
    """Median phase times over `repeats` profiled steps, and the median fused step time in the same
    pass.

    Trains 2 × (repeats + 1) extra optimizer steps: the caller runs this after the measured windows
    and
    the eval, so neither the record's losses nor its metrics include them."""
    batch = make_batch()
    trainer.profile_phases(batch)  # untimed: TensorFlow traces its split functions here
    trainer.train_step(batch)
    trainer.sync()
    samples: list[dict[str, float]] = []
    fused_s: list[float] = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        batch = make_batch()
        host_s = time.perf_counter() - t0
        samples.append({HOST_BATCH: host_s, **trainer.profile_phases(batch)})
        trainer.sync()
        t0 = time.perf_counter()
        trainer.train_step(batch)
        trainer.sync()
        fused_s.append(time.perf_counter() - t0)
    names = [p for p in PHASES if p in samples[0]] + [p for p in samples[0] if p not in PHASES]
    phases_s = {p: statistics.median(s[p] for s in samples) for p in names}
    total_s = sum(phases_s.values())
    fused_step_s = statistics.median(fused_s)
    return {
        "phases_s": phases_s,
        "phase_shares": {p: t / total_s for p, t in phases_s.items()} if total_s > 0 else {},
        # what a step costs with its batch prepared inline: host batch + the fused step as the
        # windows run it
        "step_s": phases_s[HOST_BATCH] + fused_step_s,
        # the real train_step, timed in this pass (the phases' reference)
        "fused_step_s": fused_step_s,
        "steps": repeats,
    }
