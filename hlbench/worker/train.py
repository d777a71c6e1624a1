"""The one training-and-measurement loop, shared by every backend, by runs, by tests and by parity.

It builds the workload's data and initial weights from the cell (framework-neutral, NumPy), asks the
backend for a Trainer, runs warmup and the measured windows (hlbench.worker.measure), evaluates, and returns
the measured part of a record.
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from hlbench.backends.base import Backend, Trainer
from hlbench.cell import Cell
from hlbench.data import Batch, Corpus, make_batches, make_corpus
from hlbench.worker import ranks
from hlbench.worker.measure import Timing, run_timed, step_stats
from hlbench.techniques.augment import AugmentationConfig
from hlbench.techniques.driver import PruningRun
from hlbench.workloads import model_spec


def corpus_for(cell: Cell) -> Corpus:
    data = {k: v for k, v in cell.workload["data"].items() if k != "sha256"}
    return make_corpus(data, seed=cell.seed)


def augmentation_for(cell: Cell) -> AugmentationConfig:
    return AugmentationConfig.from_dict(cell.techniques.get("augmentation") or {"method": "none"})


def train_batches(cell: Cell, corpus: Corpus, n_steps: int, stats: dict[str, float] | None = None) -> list[Batch]:
    """The global batches of steps 0 … n_steps-1: the same tokens in every backend and every cell
    whose global batch and augmentation are the same (so accumulation settings compare the same
    optimization). Augmentation happens here, on the host; its time is added to `stats`."""
    w = cell.workload
    return make_batches(corpus, cell.seed, n_steps, w["global_batch"], w["seq_len"], "train", w["variable_length"],
                        augmentation_for(cell), stats)


def eval_batches(cell: Cell, corpus: Corpus) -> list[Batch]:
    """Held-out batches, evaluated micro-batch by micro-batch to stay within training's memory."""
    w, n = cell.workload, cell.measurement["eval_batches"]
    if n == 0:
        return []
    size = w["global_batch"] if w["hold"] == "global" else w["micro_batch"]
    whole = make_batches(corpus, cell.seed, n, size, w["seq_len"], "eval", w["variable_length"])
    chunks = size // w["micro_batch"]
    return [micro for batch in whole for micro in batch.split(chunks)]


def run_cell(cell: Cell, backend: Backend, profile_dir: Path | None = None) -> dict[str, Any]:
    """Train and measure one cell; returns the record's measured fields (status `ok`).

    `profile_dir`: run the profiling pass (hlbench.profiling) after the measured windows and the eval,
    trace files under it; the record's `profile` is None without it."""
    m = cell.measurement
    t0 = time.perf_counter()
    spec = model_spec(cell)
    corpus = corpus_for(cell)
    n_steps = m["warmup_steps"] + m["windows"] * m["steps"]
    prep_stats: dict[str, float] = {}
    batches = train_batches(cell, corpus, n_steps, prep_stats)
    held_out = eval_batches(cell, corpus)
    weights = spec.init_weights(cell.seed)
    pruning = PruningRun(cell, spec)
    build_cell, spec, weights = pruning.prepare(cell, weights)  # a structured shrink: a smaller model
    data_prep_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    trainer = backend.build(build_cell, weights)
    build_s = time.perf_counter() - t0
    if cell.launch:
        # Every rank must be running this very cell: nodes that drifted apart (one moved on after a
        # failure) would otherwise train two configurations together, or meet stale rendezvous state.
        hashes = trainer.all_gather_objects(cell.hash)
        if len(set(hashes)) > 1:
            raise RuntimeError(f"the ranks run different cells (hashes by rank: {hashes}); restart the run on every node")

    losses: list[Any] = []
    peak_reset = [False]
    # Test-only hook (documented in the README): an artificial delay per step inside the timed region,
    # so the end-to-end tests of `hlbench compare` can produce a real, known slowdown.
    delay_s = float(os.environ.get("HLBENCH_TEST_STEP_DELAY_S", "0") or 0)
    # Test-only hook: "R:S" makes rank R kill itself with SIGKILL at step S (a rank dying mid-run);
    # "R:S:oom" makes it raise MemoryError there instead (a rank running out of memory).
    kill_rank, _, kill_at = os.environ.get("HLBENCH_TEST_KILL_RANK", "").partition(":")
    kill_step, _, kill_how = kill_at.partition(":")

    first_measured = m["warmup_steps"]

    def step(i: int) -> None:
        if i != first_measured:  # a pruning event before the first measured step runs untimed (below)
            pruning.before_step(i, trainer)
        if kill_rank and int(kill_rank) == trainer.rank and i == int(kill_step):
            if kill_how == "oom":
                raise MemoryError(f"simulated: rank {trainer.rank} cannot allocate at step {i}")
            os.kill(os.getpid(), signal.SIGKILL)
        losses.append(trainer.train_step(batches[i]))
        if delay_s:
            time.sleep(delay_s)

    def on_window_start() -> None:
        if not peak_reset[0]:  # one peak over all measured windows, warmup excluded
            pruning.before_step(first_measured, trainer)  # e.g. oneshot after the warmup
            trainer.reset_peak_memory()
            peak_reset[0] = True

    agree = (lambda over: any(trainer.all_gather_objects(over))) if cell.launch else None
    timing = run_timed(
        step, trainer.sync, m["warmup_steps"], m["steps"], m["windows"], m["budget_s"], on_window_start, agree=agree
    )
    memory = {**trainer.memory(), **_host_memory()}
    distributed = None
    if cell.launch:  # one record for all ranks (hlbench.worker.ranks): a collective, so before anything rank-specific
        per_rank = trainer.all_gather_objects({
            "rank": trainer.rank, "host": socket.gethostname(), "pid": os.getpid(),
            "device": str(trainer.info().get("device")), "timing": timing.to_dict(), "memory": memory})
        timing, memory = ranks.slowest_timing(per_rank), ranks.max_memory(per_rank)
        distributed = ranks.distributed_section(cell.launch, per_rank)
    train_losses = trainer.losses_to_floats(losses)
    t0 = time.perf_counter()
    eval_loss = trainer.eval_loss(held_out) if held_out else None
    eval_s = time.perf_counter() - t0

    measured = batches[m["warmup_steps"] : m["warmup_steps"] + timing.steps_measured]
    result = {
        "profile": None,
        "timing": {
            **timing.to_dict(),
            "data_prep_s": data_prep_s,
            # host time spent augmenting the train batches (inside data_prep_s, outside the step times)
            "augmentation_s": prep_stats.get("augmentation_s", 0.0),
            "augmentation_per_step_s": prep_stats.get("augmentation_s", 0.0) / n_steps,
            "build_s": build_s,
            "startup_s": build_s + sum(timing.warmup_step_times_s),
            "eval_s": eval_s,
        },
        "metrics": _throughput(cell, timing, measured),
        "loss": _losses(corpus, timing, train_losses, eval_loss, m["warmup_steps"]),
        "memory": memory,
        "distributed": distributed,
        "backend_info": {**trainer.info(), "n_params": spec.n_params, "flops_per_token": spec.flops_per_token(
            cell.workload["seq_len"]), "pruning": pruning.report(trainer)},
    }
    if profile_dir is not None and not cell.launch:  # not built for data-parallel cells (README)
        # extra steps after the windows, the eval and every figure above: nothing above sees them
        from hlbench.profiling.section import profile_section

        # a real host batch preparation (augmentation included) per profiled step: batch 0 again
        result["profile"] = profile_section(trainer, lambda: train_batches(cell, corpus, 1)[0], Path(profile_dir))
    return result


def _throughput(cell: Cell, timing: Timing, measured: list[Batch]) -> dict[str, Any]:
    w = cell.workload
    tokens_per_step = w["global_batch"] * w["seq_len"]
    wall_s = sum(timing.window_wall_s)
    target_tokens = sum(b.n_target_tokens for b in measured)
    return {
        "tokens_per_step": tokens_per_step,
        # DESIGN §3: global batch × sequence length × optimizer steps / window time (padding included)
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
