#!/usr/bin/env python
"""The TensorFlow backend's overhead, and PyTorch vs TensorFlow on the same cell, in one run.

Three sides train the `gpt-<size>` cell (fp32, accumulation k, no pruning) from the same initial
weights on the same batches with the same AdamW, in this one process, trial after trial:

  tf       hlbench.worker.train.run_cell(cell, TFBackend()): what every suite run measures;
           metrics.tokens_per_s.
  bare     a hand-written TensorFlow loop (`bare_trial` below): the same model and optimizer
           classes, one tf.function step with a GradientTape per micro-batch, one clock read before
           and one after the measured steps (with a device sync before each), nothing in between.
  torch    run_cell(cell, TorchBackend()) on the torch twin of the cell.

Trials rotate which side goes first, so drift of the machine hits all alike. Printed: tf / bare
(hlbench's overhead; target >= 0.99, as the median of per-trial ratios and as the ratio of the
medians) and torch / tf (the frameworks' ratio on this machine, median of per-trial ratios), and a
check that the tf and bare losses agree (same training).

A benchmark, not a test: exits 0 whatever the ratios (1 if the tf and bare losses disagree, 2 on bad
arguments).

    python benchmarks/tf_overhead.py        # gpt-small, seq 128, batch 8, 5 trials of 20 steps
    python benchmarks/tf_overhead.py --size tiny --trials 3 --xla
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf

from hlbench.backends.tf.backend import TFBackend, configure_runtime
from hlbench.backends.tf.losses import token_loss_sum
from hlbench.backends.tf.models import build_model
from hlbench.backends.tf.optim import AdamW, clip_by_global_norm
from hlbench.backends.torch.backend import TorchBackend
from hlbench.cell import Cell
from hlbench.suite import load_suite
from hlbench.worker.inputs import corpus_for, train_batches
from hlbench.worker.train import run_cell
from hlbench.workloads import model_spec

TARGET = 0.99
LOSS_RTOL = 1e-5

SUITE = """\
device: cpu
backends: [torch, tf]
workloads: [{{model: gpt, size: {size}, seq_len: {seq_len}, batch_size: {batch_size}}}]
axes: {{accumulation: [{accumulation}], compile: [{xla}]}}
measurement:
  warmup_steps: {warmup}
  steps: {steps}
  windows: 1
  budget_s: 1.0e6
  timeout_s: 1.0e6
  eval_batches: 1
"""


def cells(args: argparse.Namespace) -> dict[str, Cell]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tf_overhead.yaml"
        path.write_text(SUITE.format(**{**vars(args), "xla": str(args.xla).lower()}))
        return {c.backend: c for c in load_suite(path).cells}


def bare_trial(cell: Cell, warmup: int, steps: int) -> tuple[float, list[float]]:
    """A TensorFlow training loop as a user writes it; returns (tokens/s of the measured steps,
    losses)."""
    spec = model_spec(cell)
    batches = train_batches(cell, corpus_for(cell), warmup + steps)
    names = list(spec.param_shapes())
    model = build_model(spec, spec.init_weights(cell.seed))
    params = [model.variables[n] for n in names]
    optimizer = AdamW(params, [spec.decayed(n) for n in names], cell.optimizer)
    k, clip = cell.axes["accumulation"], cell.optimizer.grad_clip_norm

    @tf.function(jit_compile=cell.axes["compile"])
    def step(inputs: tf.Tensor, targets: tf.Tensor, n_tokens: tf.Tensor) -> tf.Tensor:
        micro = inputs.shape[0] // k
        total, acc = tf.constant(0.0), [tf.zeros_like(p) for p in params]
        for i in range(k):  # unrolled: k is small and static
            with tf.GradientTape() as tape:
                loss_sum = token_loss_sum(
                    model(inputs[i * micro : (i + 1) * micro]), targets[i * micro : (i + 1) * micro]
                )
                scaled = loss_sum / n_tokens
            grads = [tf.convert_to_tensor(g) for g in tape.gradient(scaled, params)]
            total, acc = total + loss_sum, [a + g for a, g in zip(acc, grads)]
        if clip is not None:
            acc, _ = clip_by_global_norm(acc, clip)
        optimizer.apply(acc)
        return total / n_tokens

    def feed(b: Any) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        # per step, from the NumPy batch, as a user's loop (and hlbench's, and the torch side's)
        # does
        return tf.constant(b.inputs), tf.constant(b.targets), tf.constant(float(b.n_target_tokens))

    losses = [step(*feed(b)) for b in batches[:warmup]]
    float(losses[-1])  # sync
    t0 = time.perf_counter()
    losses += [step(*feed(b)) for b in batches[warmup:]]
    float(losses[-1])  # the last step's loss depends on every earlier update: a sync on any device
    elapsed = time.perf_counter() - t0
    w = cell.workload
    return w.global_batch * w.seq_len * steps / elapsed, [float(x) for x in losses]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="small", help="gpt preset (default: small)")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--accumulation", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument(
        "--xla",
        action="store_true",
        help="compile: true (XLA for tf and bare, torch.compile for torch)",
    )
    return parser.parse_args(argv)


def one_trial(
    trial: int, tf_cell: Cell, torch_cell: Cell, args: argparse.Namespace
) -> tuple[dict[str, float], list[float], list[float]]:
    """(tokens/s per side, tf's per-step losses, bare's per-step losses) of one trial, the sides in
    an order rotated by the trial's number."""
    sides = ["tf", "bare", "torch"]
    tps: dict[str, float] = {}
    tf_losses: list[float] = []
    bare_losses: list[float] = []
    for side in sides[trial % 3 :] + sides[: trial % 3]:
        gc.collect()
        if side == "bare":
            tps[side], bare_losses = bare_trial(tf_cell, args.warmup, args.steps)
        else:
            result = run_cell(
                tf_cell if side == "tf" else torch_cell,
                TFBackend() if side == "tf" else TorchBackend(),
            )
            tps[side] = result["metrics"]["tokens_per_s"]
            if side == "tf":
                tf_losses = result["loss"]["train_loss_per_step"]
    return tps, tf_losses, bare_losses


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_runtime()
    by_backend = cells(args)
    tf_cell, torch_cell = by_backend["tf"], by_backend["torch"]
    print(
        f"cell {tf_cell.id} vs {torch_cell.id}; {args.warmup} warmup + {args.steps} measured "
        f"steps; {args.trials} trials; TF {tf.__version__}, {os.cpu_count()} CPUs"
    )
    header = (
        f"{'trial':>5}  {'tf tok/s':>10}  {'bare tok/s':>10}  {'torch tok/s':>11}  "
        f"{'tf/bare':>7}  {'torch/tf':>8}"
    )
    print(header + "\n" + "-" * len(header))
    all_tps, fw_ratios, tf_losses, bare_losses = [], [], [], []
    for trial in range(args.trials):
        tps, tf_trial_losses, bare_trial_losses = one_trial(trial, tf_cell, torch_cell, args)
        tf_losses.append(tf_trial_losses)
        bare_losses.append(bare_trial_losses)
        all_tps.append(tps)
        fw_ratios.append(tps["torch"] / tps["tf"])
        print(
            f"{trial + 1:>5}  {tps['tf']:>10,.0f}  {tps['bare']:>10,.0f}  {tps['torch']:>11,.0f}  "
            f"{tps['tf'] / tps['bare']:>7.3f}  {fw_ratios[-1]:>8.3f}",
            flush=True,
        )
    return report(all_tps, fw_ratios, tf_losses, bare_losses)


def report(
    tps: list[dict[str, float]],
    fw_ratios: list[float],
    tf_losses: list[list[float]],
    bare_losses: list[list[float]],
) -> int:
    """Print the summary; 0, or 1 when the tf and bare losses disagree."""
    same = np.allclose(np.array(tf_losses), np.array(bare_losses), rtol=LOSS_RTOL)
    print(
        f"\ncheck: tf and bare per-step losses agree (rtol {LOSS_RTOL:g}): "
        f"{'PASS' if same else 'FAIL'}"
    )
    ratios = [t["tf"] / t["bare"] for t in tps]
    median = statistics.median(ratios)
    of_medians = statistics.median(t["tf"] for t in tps) / statistics.median(t["bare"] for t in tps)
    print(
        f"tf / bare    = {median:.3f} (median of per-trial ratios, "
        f"span {min(ratios):.3f} … {max(ratios):.3f}); ratio of medians {of_medians:.3f}; "
        f"target ≥ {TARGET}: {'meets' if min(median, of_medians) >= TARGET else 'BELOW'}"
    )
    print(
        f"torch / tf   = {statistics.median(fw_ratios):.3f} "
        "(median; > 1 means PyTorch trains this cell faster here)"
    )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
