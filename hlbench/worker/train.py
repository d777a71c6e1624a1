"""The one training-and-measurement loop, shared by every backend, by runs, by tests and by parity.

`run_cell` reads like a training script: prepare the inputs (the workload's data and initial
weights, framework-neutral NumPy), build the backend's Trainer, run warmup and the measured windows
(hlbench.worker.measure), combine the ranks' figures, evaluate, and assemble the measured part of
a record.
"""

from __future__ import annotations

import os
import resource
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hlbench.backends.base import Backend, Trainer
from hlbench.cell import Cell
from hlbench.data import Batch, Corpus
from hlbench.techniques import precision, test_hooks
from hlbench.techniques.driver import PruningRun
from hlbench.worker import health, quality, ranks
from hlbench.worker.inputs import corpus_for, eval_batches, timed_train_batches, train_batches
from hlbench.worker.measure import Events, Timing, TimingPlan, run_timed, step_stats
from hlbench.workloads import ModelSpec, model_spec


@dataclass
class Inputs:
    """What a cell trains on, all made before the trainer is built (and timed as data_prep_s)."""

    corpus: Corpus
    batches: list[Batch]  # one global batch per planned optimizer step
    held_out: list[Batch]
    build_cell: Cell  # the cell the backend builds: a structured shrink makes a smaller model
    spec: ModelSpec
    weights: dict[str, np.ndarray]
    pruning: PruningRun
    augmentation_s: float
    data_prep_s: float


@dataclass
class Measured:
    """The figures of the timed steps and the eval, the ranks' combined in a data-parallel cell."""

    timing: Timing
    memory: dict[str, Any]
    distributed: dict[str, Any] | None
    train_losses: list[float]
    eval_loss: float | None
    build_s: float
    eval_s: float


def run_cell(cell: Cell, backend: Backend, profile_dir: Path | None = None) -> dict[str, Any]:
    """Train and measure one cell; returns the record's measured fields (status `ok`).

    `profile_dir`: run the profiling pass (hlbench.profiling) after the measured windows and the
    eval, trace files under it; the record's `profile` is None without it."""
    plan = quality.timing_plan(cell)  # fixed steps, or evaluation intervals to a budget
    inputs = prepare_inputs(cell, plan, backend)
    trainer, build_s = build(cell, backend, inputs)
    floor = inputs.corpus.entropy_floor_nats
    tracker = quality.TargetTracker.for_cell(cell, trainer, inputs.held_out, floor)
    timing, raw_losses = measure(cell, trainer, inputs, plan, tracker)
    timing, memory, distributed = combine_ranks(cell, trainer, timing)
    train_losses = trainer.losses_to_floats(raw_losses)  # after the windows: no per-step sync
    grad_norms = trainer.grad_norms_to_floats()  # kept on the device beside the losses
    if tracker is None:
        eval_loss, eval_s = evaluate(trainer, inputs.held_out)
    else:  # the last eval of the curve is the final one
        eval_loss, eval_s = tracker.final_eval()
    check_finite(cell, trainer, train_losses, eval_loss)
    measured = Measured(timing, memory, distributed, train_losses, eval_loss, build_s, eval_s)
    result = assemble_record(cell, inputs, trainer, measured)
    overflow = result["backend_info"].get("overflow_skipped_steps")
    clip = cell.optimizer.grad_clip_norm
    result["health"] = health.section(train_losses, grad_norms, clip, overflow)
    if tracker is not None:
        result["quality"] = tracker.section()
    if profile_dir is not None and not cell.launch:  # not built for data-parallel cells (README)
        result["profile"] = profile(cell, trainer, inputs.corpus, profile_dir)
    return result


class NonFiniteLoss(RuntimeError):
    """The training diverged: a loss became NaN or infinite at a precision without loss scaling."""


def first_nonfinite(losses: list[float]) -> int | None:
    """The index of the first loss that is NaN or infinite, or None."""
    bad = np.flatnonzero(~np.isfinite(np.asarray(losses, dtype=np.float64)))
    return int(bad[0]) if bad.size else None


def check_finite(
    cell: Cell, trainer: Trainer, train_losses: list[float], eval_loss: float | None
) -> None:
    """NonFiniteLoss when a step's loss (its index in the record's train_loss_per_step, warmup
    included, as HLBENCH_TEST_NONFINITE_STEP counts) or the held-out loss after the last step is
    NaN or infinite at a level without loss scaling (fp32,
    tf32, bf16, bf16-pure): nothing there skips such a step, so every later figure is of a broken
    training. fp16's loss scaling skips its overflow steps itself (and counts them): those stay as
    they are. In a data-parallel cell the ranks agree (a collective), so all of them fail
    together."""
    if precision.level(cell.axes["precision"]).loss_scaling:
        return
    losses = [*train_losses, *([] if eval_loss is None else [eval_loss])]
    step = first_nonfinite(losses)
    found = None if step is None else [step, _nonfinite_name(losses[step])]
    if cell.launch:
        found = min((f for f in trainer.all_gather_objects(found) if f is not None), default=None)
    if found is None:
        return
    step, what = found
    if step < len(train_losses):
        raise NonFiniteLoss(f"loss became non-finite ({what}) at step {step}")
    raise NonFiniteLoss(
        f"held-out loss became non-finite ({what}) after the last step ({len(train_losses) - 1})"
    )


def _nonfinite_name(value: float) -> str:
    return "nan" if np.isnan(value) else "inf" if value > 0 else "-inf"


def prepare_inputs(cell: Cell, plan: TimingPlan, backend: Backend | None = None) -> Inputs:
    """Batches for every planned step, the held-out batches and the initial weights (pruned at
    init for a structured shrink). A custom model is built by `backend` here
    (Backend.resolve_spec): its weights are the module's own."""
    t0 = time.perf_counter()
    spec = model_spec(cell)
    if backend is not None:
        spec = backend.resolve_spec(cell, spec)
    corpus = corpus_for(cell)
    batches, augmentation_s = timed_train_batches(cell, corpus, plan.n_steps)
    held_out = eval_batches(cell, corpus)
    weights = spec.init_weights(cell.train_seed)  # the repeat's seed (measurement.seeds)
    pruning = PruningRun(cell, spec)
    build_cell, spec, weights = pruning.prepare(cell, weights)  # a shrink: a smaller model
    return Inputs(
        corpus=corpus,
        batches=batches,
        held_out=held_out,
        build_cell=build_cell,
        spec=spec,
        weights=weights,
        pruning=pruning,
        augmentation_s=augmentation_s,
        data_prep_s=time.perf_counter() - t0,
    )


def build(cell: Cell, backend: Backend, inputs: Inputs) -> tuple[Trainer, float]:
    """The backend's trainer and the seconds building it took."""
    t0 = time.perf_counter()
    level = precision.level(cell.axes["precision"])
    trainer = backend.build(inputs.build_cell, inputs.spec, level, inputs.weights)
    build_s = time.perf_counter() - t0
    if cell.launch:
        # Every rank must be running this very cell: nodes that drifted apart (one moved on after a
        # failure) would otherwise train two configurations together, or meet stale rendezvous
        # state.
        hashes = trainer.all_gather_objects(cell.hash)
        if len(set(hashes)) > 1:
            raise RuntimeError(
                f"the ranks run different cells (hashes by rank: {hashes}); "
                "restart the run on every node"
            )
    return trainer, build_s


def measure(
    cell: Cell,
    trainer: Trainer,
    inputs: Inputs,
    plan: TimingPlan,
    tracker: quality.TargetTracker | None = None,
) -> tuple[Timing, list[Any]]:
    """Warmup and the measured windows; returns their timing and the raw per-step losses.
    `tracker` (time to target): evaluates after each window and stops at the target."""
    losses: list[Any] = []
    pruning = inputs.pruning

    def optimizer_step(i: int) -> None:
        losses.append(trainer.train_step(inputs.batches[i]))

    step = test_hooks.wrap_step(optimizer_step, trainer.rank)  # itself, unless a test hook is set
    # pruning events run between steps, outside every timed region (timing.technique_events)
    events = Events("pruning", pruning.due, lambda i: pruning.before_step(i, trainer))
    peak_reset = [False]

    def on_window_start() -> None:
        if not peak_reset[0]:  # one peak over all measured windows, warmup excluded
            trainer.reset_peak_memory()
            peak_reset[0] = True

    agree = (lambda over: any(trainer.all_gather_objects(over))) if cell.launch else None
    timing = run_timed(
        step,
        trainer.sync,
        plan,
        on_window_start,
        agree=agree,
        timer=trainer.step_timer(),
        events=events,
        after_window=tracker.after_window if tracker is not None else None,
    )
    return timing, losses


def combine_ranks(
    cell: Cell, trainer: Trainer, timing: Timing
) -> tuple[Timing, dict[str, Any], dict[str, Any] | None]:
    """Timing, memory and the `distributed` section: this process's own, or in a data-parallel
    cell one record for all ranks (hlbench.worker.ranks). A collective, so it runs before anything
    rank-specific."""
    memory = {**trainer.memory(), **_host_memory()}
    if not cell.launch:
        return timing, memory, None
    per_rank = trainer.all_gather_objects(
        {
            "rank": trainer.rank,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "device": str(trainer.info().get("device")),
            "timing": timing.to_dict(),
            "memory": memory,
        }
    )
    return (
        ranks.slowest_timing(per_rank),
        ranks.max_memory(per_rank),
        ranks.distributed_section(cell.launch.to_dict(), per_rank),
    )


def evaluate(trainer: Trainer, held_out: list[Batch]) -> tuple[float | None, float]:
    """The held-out loss (None without held-out batches) and the seconds it took."""
    t0 = time.perf_counter()
    eval_loss = trainer.eval_loss(held_out) if held_out else None
    return eval_loss, time.perf_counter() - t0


def assemble_record(
    cell: Cell, inputs: Inputs, trainer: Trainer, measured: Measured
) -> dict[str, Any]:
    """The record's measured fields; `profile` is filled in afterwards when profiling is on."""
    warmup, timing = cell.measurement.warmup_steps, measured.timing
    n_steps = len(inputs.batches)
    spec = inputs.spec
    return {
        "profile": None,
        "timing": {
            **timing.to_dict(),
            "data_prep_s": inputs.data_prep_s,
            # host time augmenting the train batches (inside data_prep_s, outside the step times)
            "augmentation_s": inputs.augmentation_s,
            "augmentation_per_step_s": inputs.augmentation_s / n_steps,
            "build_s": measured.build_s,
            "startup_s": measured.build_s + sum(timing.warmup_step_times_s),
            "eval_s": measured.eval_s,
        },
        "metrics": _throughput(
            cell, timing, inputs.batches[warmup : warmup + timing.steps_measured]
        ),
        "loss": _losses(inputs.corpus, timing, measured.train_losses, measured.eval_loss, warmup),
        "memory": measured.memory,
        "distributed": measured.distributed,
        "backend_info": {
            **trainer.info(),
            "n_params": spec.n_params,
            "flops_per_token": spec.flops_per_token(cell.workload.seq_len),
            "flops_source": spec.flops_source,  # formula, or counted (a custom model)
            "initial_weights": spec.initial_weights,  # whether another framework starts alike
            "pruning": inputs.pruning.report(trainer),
        },
    }


def profile(cell: Cell, trainer: Trainer, corpus: Corpus, profile_dir: Path) -> dict[str, Any]:
    """The profiling pass: extra steps after the windows, the eval and every figure of the record,
    so none of those sees them."""
    from hlbench.profiling.section import profile_section

    # a real host batch preparation (augmentation included) per profiled step: batch 0 again
    return profile_section(trainer, lambda: train_batches(cell, corpus, 1)[0], Path(profile_dir))


def _throughput(cell: Cell, timing: Timing, measured: list[Batch]) -> dict[str, Any]:
    w = cell.workload
    tokens_per_step = w.global_batch * w.seq_len
    wall_s = sum(timing.window_wall_s)
    target_tokens = sum(b.n_target_tokens for b in measured)
    return {
        "tokens_per_step": tokens_per_step,
        # global batch × sequence length × optimizer steps / window time (padding included)
        "tokens_per_s": tokens_per_step * timing.steps_measured / wall_s if wall_s > 0 else None,
        # only the positions that are trained on (differs from tokens_per_s with variable_length)
        "target_tokens_per_s": target_tokens / wall_s if wall_s > 0 else None,
        "measured_wall_s": wall_s,
        **step_stats(timing.step_times_s),
    }


def _losses(
    corpus: Corpus, timing: Timing, train_losses: list[float], eval_loss: float | None, warmup: int
) -> dict[str, Any]:
    last_window = timing.window_step_times_s[-1] if timing.window_step_times_s else []
    end = warmup + timing.steps_measured
    final = float(np.mean(train_losses[end - len(last_window) : end])) if last_window else None
    floor = corpus.entropy_floor_nats

    def excess(loss: float | None) -> float | None:
        return None if loss is None or floor is None else loss - floor

    return {
        "train_loss_per_step": train_losses,
        "final_train_loss": final,  # mean over the last measured window's steps, nats/token
        "eval_loss": eval_loss,
        "entropy_floor_nats": floor,
        "entropy_floor_reason": corpus.entropy_floor_reason,
        "excess_train_loss_nats": excess(final),
        "excess_eval_loss_nats": excess(eval_loss),
    }


def _host_memory() -> dict[str, Any]:
    # ru_maxrss is KiB on Linux, bytes on macOS.
    scale = 1 if sys.platform == "darwin" else 1024
    return {"host_peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale}
