"""Time to target: train until the held-out loss reaches a target, evaluating between windows.

The measurement loop (hlbench.worker.measure.run_timed) runs as in fixed-steps mode: warmup steps,
then windows, each ended by a device sync; here a window is one evaluation interval
(`eval_every_steps` optimizer steps) and after each one `TargetTracker.after_window` evaluates the
held-out batches, outside every timed region, and stops the run once the target is met (unless
`stop_at_target: false`, which trains on to the budget so that final losses compare at equal
budgets) or the training time budget is spent. The training time of a point is the warmup steps'
time plus the windows' wall time so far (synced; evals, technique events and data preparation
excluded); each eval's own time is kept beside it.

The target is either an excess over the corpus's entropy floor (`target_excess_nats`: the same
target on every machine, since the floor of the Markov corpus is exact) or an absolute eval loss
(`target_eval_loss`, for a byte corpus whose floor is unknown).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from hlbench.backends.base import Trainer
from hlbench.cell import TIME_TO_TARGET, Cell
from hlbench.data import Batch
from hlbench.worker.measure import Timing, TimingPlan


def is_time_to_target(cell: Cell) -> bool:
    return cell.measurement.mode == TIME_TO_TARGET


def timing_plan(cell: Cell) -> TimingPlan:
    """The cell's plan: fixed steps as the suite says, or warmup and evaluation intervals up to the
    step budget, the windows' time bounded by max_time_s."""
    m = cell.measurement
    if not is_time_to_target(cell):
        return TimingPlan.from_measurement(m)
    every = m.eval_every_steps or 1
    steps = m.planned_steps(cell.workload.global_batch * cell.workload.seq_len)
    return TimingPlan(
        warmup_steps=m.warmup_steps,
        steps=every,
        windows=(steps - m.warmup_steps) // every,
        budget_s=m.max_time_s if m.max_time_s is not None else math.inf,
    )


@dataclass(frozen=True)
class Target:
    """What is compared with `value`: the excess over the floor, or the eval loss itself."""

    kind: str  # excess_nats | eval_loss
    value: float
    floor_nats: float | None

    @classmethod
    def of(cls, cell: Cell, floor_nats: float | None) -> Target:
        m = cell.measurement
        if m.target_excess_nats is not None:
            if floor_nats is None:  # the suite loader refuses this; a hand-made cell may not
                raise ValueError("target_excess_nats needs a corpus with a known entropy floor")
            return cls("excess_nats", m.target_excess_nats, floor_nats)
        assert m.target_eval_loss is not None  # the schema requires one of the two
        return cls("eval_loss", m.target_eval_loss, floor_nats)

    def excess(self, eval_loss: float) -> float | None:
        return None if self.floor_nats is None else eval_loss - self.floor_nats

    def met(self, eval_loss: float) -> bool:
        figure = self.excess(eval_loss) if self.kind == "excess_nats" else eval_loss
        return figure is not None and math.isfinite(figure) and figure <= self.value


@dataclass
class TargetTracker:
    """Evaluates after every window and keeps the eval curve; `section()` is the record's
    `quality`."""

    cell: Cell
    trainer: Trainer
    held_out: list[Batch]
    target: Target
    curve: list[dict[str, Any]] = field(default_factory=list)
    reached_at: int | None = None  # index into curve
    stopped_by: str = "step budget"
    last_eval_loss: float | None = None  # as evaluated (NaN stays NaN: check_finite reads it)

    @classmethod
    def for_cell(
        cls, cell: Cell, trainer: Trainer, held_out: list[Batch], floor_nats: float | None
    ) -> TargetTracker | None:
        """The tracker of a time-to-target cell; None in fixed-steps mode."""
        if not is_time_to_target(cell):
            return None
        return cls(cell, trainer, held_out, Target.of(cell, floor_nats))

    @property
    def tokens_per_step(self) -> int:
        return self.cell.workload.global_batch * self.cell.workload.seq_len

    def after_window(self, timing: Timing) -> bool:
        """Evaluate now (between windows: the window ended synced; the eval's float is read back,
        so it is synced too) and say whether to stop."""
        t0 = time.perf_counter()
        eval_loss = self.trainer.eval_loss(self.held_out)
        eval_s = time.perf_counter() - t0
        self.last_eval_loss = eval_loss
        steps = len(timing.warmup_step_times_s) + timing.steps_measured
        train_s = sum(timing.warmup_step_times_s) + sum(timing.window_wall_s)
        self.curve.append(
            {
                "step": steps,
                "tokens": steps * self.tokens_per_step,
                "train_time_s": train_s,
                "eval_s": eval_s,
                "eval_loss": eval_loss if math.isfinite(eval_loss) else None,
                "excess_nats": self.target.excess(eval_loss) if math.isfinite(eval_loss) else None,
            }
        )
        met = self.target.met(eval_loss)
        if self.cell.launch:  # every rank stops at the same window: the chief's eval decides
            met = bool(self.trainer.all_gather_objects(met)[0])
        budget_s = self.cell.measurement.max_time_s
        if met and self.reached_at is None:
            self.reached_at = len(self.curve) - 1
        if met and self.cell.measurement.stop_at_target:
            self.stopped_by = "target"
        elif not math.isfinite(eval_loss):
            self.stopped_by = "non-finite eval loss"  # diverged: no later eval can reach it
        elif budget_s is not None and (train_s >= budget_s or timing.budget_hit):
            self.stopped_by = "max_time_s"
        else:
            return False
        return True

    def final_eval(self) -> tuple[float | None, float]:
        """The record's eval loss (the last curve point: no extra eval) and the evals' time."""
        return self.last_eval_loss, sum(p["eval_s"] for p in self.curve)

    def section(self) -> dict[str, Any]:
        """The record's `quality`: reached or not, the figures at the target, the best loss, the
        budget, and the eval curve as raw columns."""
        m, curve = self.cell.measurement, self.curve
        at = curve[self.reached_at] if self.reached_at is not None else None
        excess = [p["excess_nats"] for p in curve if p["excess_nats"] is not None]
        losses = [p["eval_loss"] for p in curve if p["eval_loss"] is not None]
        upto = curve[: self.reached_at + 1] if self.reached_at is not None else curve
        return {
            "mode": TIME_TO_TARGET,
            "seed": self.cell.train_seed,
            "target": {"kind": self.target.kind, "value": self.target.value},
            "entropy_floor_nats": self.target.floor_nats,
            "reached": at is not None,
            "stopped_by": self.stopped_by,
            "time_to_target_s": at["train_time_s"] if at else None,
            "steps_to_target": at["step"] if at else None,
            "tokens_to_target": at["tokens"] if at else None,
            # windows up to the target: the parent's telemetry sums energy over them
            "windows_to_target": self.reached_at + 1 if at else None,
            "eval_s_to_target": sum(p["eval_s"] for p in upto) if at else None,
            "eval_s_total": sum(p["eval_s"] for p in curve),
            "train_time_s": curve[-1]["train_time_s"] if curve else None,
            "steps": curve[-1]["step"] if curve else None,
            "best_eval_loss": min(losses) if losses else None,
            "best_excess_nats": min(excess) if excess else None,
            "final_excess_nats": curve[-1]["excess_nats"] if curve else None,
            "eval_every_steps": m.eval_every_steps,
            "budget": {
                "max_steps": m.max_steps,
                "max_tokens": m.max_tokens,
                "max_time_s": m.max_time_s,
                "planned_steps": m.planned_steps(self.tokens_per_step),
            },
            "eval_curve": {key: [p[key] for p in curve] for key in CURVE_KEYS},
        }


CURVE_KEYS = ("step", "tokens", "train_time_s", "eval_s", "eval_loss", "excess_nats")
