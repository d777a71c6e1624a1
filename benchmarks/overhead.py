#!/usr/bin/env python
"""hlbench's measurement overhead: its tokens/s next to a bare hand-written training loop's.

Both sides train the torch `gpt-<size>` cell (fp32, accumulation k, no pruning) from the same
initial weights on the same batches with the same optimizer, in this one process:

  hlbench  hlbench.worker.train.run_cell(cell, TorchBackend()), the loop every suite run uses; its
           metrics.tokens_per_s.
  bare     the loop a user would write by hand (below, `bare_trial`): model, AdamW, micro-batch
           loop, clipping, one clock read before and one after the measured steps, a device sync
           before each clock read and none in between.

Trials alternate which side goes first (A/B, B/A, ...) so drift of the machine hits both alike. The
ratio hlbench / bare is the overhead figure; the target is >= 0.99. Both sides' per-step losses are
compared at the end to show they ran the same training.

This is a benchmark, not a test: it exits 0 whatever the ratio (1 only if the two sides' losses
disagree, since then the ratio compares different work; 2 on bad arguments).

    python benchmarks/overhead.py                # gpt-small, seq 128, batch 8, 5 trials of 20 steps
    python benchmarks/overhead.py --accumulation 4 --device cuda
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from hlbench.backends.torch.backend import TorchBackend
from hlbench.backends.torch.models import build_model, load_weights, parameter_map
from hlbench.cell import Cell
from hlbench.data import IGNORE_INDEX, Batch
from hlbench.errors import UsageError
from hlbench.suite import load_suite
from hlbench.worker.inputs import corpus_for, train_batches
from hlbench.worker.train import run_cell
from hlbench.workloads import ModelSpec, model_spec

TARGET = 0.99
# Same training, same device: the losses should match to float32 rounding (bitwise on a CPU; a GPU's
# attention backward may sum in a different order between runs).
LOSS_RTOL, LOSS_ATOL = 1e-4, 1e-5

SUITE_TEMPLATE = """\
name: overhead
seed: 0
device: {device}
backends: [torch]
workloads:
  - model: gpt
    size: {size}
    seq_len: {seq_len}
    batch_size: {batch_size}
axes:
  precision: [fp32]
  accumulation: [{accumulation}]
  pruning: [none]
measurement:
  warmup_steps: {warmup}
  steps: {steps}
  windows: 1
  budget_s: 1.0e6
  timeout_s: 1.0e6
  eval_batches: 1
"""
# eval_batches is 1, not 0: a suite accepts 0, but hlbench.worker.inputs.eval_batches passes n=0 to
# make_batches, which rejects it. The eval runs after the measured window: no figure here changes.


# (flag, type, default, help)
OPTIONS: list[tuple[str, type, Any, str]] = [
    ("--size", str, "small", "gpt preset (tiny, small, medium, gpt2-124m, ...; default: small)"),
    ("--seq-len", int, 128, "tokens per sequence (default: 128)"),
    ("--batch-size", int, 8, "sequences per optimizer step, the global batch (default: 8)"),
    ("--steps", int, 20, "measured optimizer steps per trial and side (default: 20)"),
    ("--warmup", int, 3, "untimed optimizer steps before them (default: 3, at least 1)"),
    ("--trials", int, 5, "A/B trial pairs (default: 5)"),
    (
        "--accumulation",
        int,
        1,
        "micro-batches per optimizer step; must divide --batch-size (default: 1)",
    ),
    ("--device", str, "auto", "auto | cpu | cuda[:N] (default: auto, CUDA when there is one)"),
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Print hlbench's tokens/s for the torch gpt cell next to a bare hand-written training "
            "loop over the same model, weights, batches and optimizer, in one process, and their "
            f"ratio (hlbench / bare; target >= {TARGET}). Trials alternate which side runs first."
        ),
        epilog=(
            "On a CPU hlbench's per-step device sync is a no-op, so the ratio isolates its "
            "Python-side bookkeeping. On CUDA hlbench records a CUDA event after every step and "
            "syncs once per window, like the bare loop's one sync around the measured steps, so "
            "the ratio there is the events' and the bookkeeping's cost."
        ),
    )
    for flag, kind, default, help_text in OPTIONS:
        parser.add_argument(flag, type=kind, default=default, help=help_text)
    args = parser.parse_args(argv)
    for name in ("seq_len", "batch_size", "steps", "warmup", "trials", "accumulation"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def make_cell(args: argparse.Namespace) -> Cell:
    """The cell exactly as a suite defines it: write a one-cell suite and load it."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "overhead.yaml"
        path.write_text(SUITE_TEMPLATE.format(**vars(args)))
        cells = load_suite(path).cells
    assert len(cells) == 1, [c.id for c in cells]
    cell = cells[0]
    expected = f"gpt-{args.size}/torch/fp32/ga{args.accumulation}/none"
    assert cell.id == expected, (cell.id, expected)
    return cell


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        sys.exit(
            f"overhead.py: error: --device {requested}: "
            f"PyTorch sees {torch.cuda.device_count()} CUDA device(s)"
        )
    return device


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------------------------------
# The reference: a training loop as a user writes it. Nothing from hlbench's trainer or timing loop.
# --------------------------------------------------------------------------------------------------
def bare_setup(
    cell: Cell, spec: ModelSpec, weights: dict[str, np.ndarray], device: torch.device
) -> tuple[torch.nn.Module, list[torch.nn.Parameter], torch.optim.AdamW, str]:
    """The model from the same weights, its parameters and AdamW (fused where it can be)."""
    opt = cell.optimizer
    torch.manual_seed(cell.seed)
    model = build_model(spec)
    load_weights(model, spec, weights)
    model = model.to(device).train()

    decay, no_decay = [], []
    for name, (param, _) in parameter_map(model, spec).items():
        (decay if spec.decayed(name) else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": opt.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    hyper = dict(lr=opt.lr, betas=tuple(opt.betas), eps=opt.eps)
    try:
        optimizer, impl = torch.optim.AdamW(groups, fused=True, **hyper), "fused"
    except (RuntimeError, ValueError):
        optimizer, impl = torch.optim.AdamW(groups, foreach=True, **hyper), "foreach"
    return model, decay + no_decay, optimizer, impl


def bare_trial(
    cell: Cell,
    spec: ModelSpec,
    weights: dict[str, np.ndarray],
    batches: list[Batch],
    device: torch.device,
    warmup: int,
    steps: int,
) -> tuple[float, list[float], str]:
    """Train warmup + steps optimizer steps; returns (tokens/s of the measured steps, losses, AdamW
    impl)."""
    k, vocab, clip = cell.axes["accumulation"], spec.vocab_size, cell.optimizer.grad_clip_norm
    model, params, optimizer, impl = bare_setup(cell, spec, weights, device)

    losses = []
    t0 = None
    for step, batch in enumerate(batches[: warmup + steps]):
        if step == warmup:
            sync(device)
            t0 = time.perf_counter()
        inputs = torch.from_numpy(batch.inputs).to(device, non_blocking=True)
        targets = torch.from_numpy(batch.targets).to(device, non_blocking=True)
        # the whole step's target count: loss = sum / n over all k micro-batches
        n_tokens = batch.n_target_tokens
        micro = len(batch) // k
        loss = torch.zeros((), device=device)
        for i in range(k):
            logits = model(inputs[i * micro : (i + 1) * micro])
            loss_sum = F.cross_entropy(
                logits.reshape(-1, vocab),
                targets[i * micro : (i + 1) * micro].reshape(-1),
                ignore_index=IGNORE_INDEX,
                reduction="sum",
            )
            (loss_sum / n_tokens).backward()
            loss += loss_sum.detach()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(params, clip, foreach=True)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss / n_tokens)
    sync(device)
    elapsed = time.perf_counter() - t0

    tokens_per_s = cell.workload.global_batch * cell.workload.seq_len * steps / elapsed
    return tokens_per_s, torch.stack(losses).tolist(), impl


def hlbench_trial(cell: Cell, steps: int) -> tuple[float, list[float], dict[str, Any]]:
    result = run_cell(cell, TorchBackend())
    measured = result["timing"]["steps_measured"]
    assert measured == steps, f"hlbench measured {measured} steps, expected {steps} (budget hit?)"
    tokens_per_s, losses = result["metrics"]["tokens_per_s"], result["loss"]["train_loss_per_step"]
    return tokens_per_s, losses, result["backend_info"]


def print_setup(
    args: argparse.Namespace, cell: Cell, spec: ModelSpec, device: torch.device
) -> None:
    w = cell.workload
    print(
        f"cell      {cell.id}  (seq_len {w.seq_len}, global batch {w.global_batch}, "
        f"micro batch {w.micro_batch}, {spec.n_params:,} params)"
    )
    print(
        f"per trial {args.warmup} warmup + {args.steps} measured steps per side; "
        f"{args.trials} trials, alternating which side goes first"
    )
    if device.type == "cuda":
        where = f" ({torch.cuda.get_device_name(device)})"
    else:
        where = f" ({platform.processor() or platform.machine()})"
    print(f"device    {device}" + where)
    print(
        f"torch     {torch.__version__}, {torch.get_num_threads()} intra-op threads, "
        f"python {platform.python_version()}"
    )
    print()


class Trials:
    """Both sides' figures, trial by trial."""

    def __init__(self) -> None:
        self.rows: list[tuple[float, float, float]] = []  # (hlbench tok/s, bare tok/s, ratio)
        self.hl_losses: list[list[float]] = []
        self.bare_losses: list[list[float]] = []
        self.info: dict[str, Any] = {}  # hlbench's backend_info
        self.bare_impl = ""


def run_trials(
    args: argparse.Namespace, cell: Cell, spec: ModelSpec, device: torch.device
) -> Trials:
    """The A/B trials, each printed as it ends."""
    # The bare side's inputs, prepared once, untimed: the same weights and batches run_cell makes.
    weights = spec.init_weights(cell.seed)
    batches = train_batches(cell, corpus_for(cell), args.warmup + args.steps)
    trials = Trials()
    for trial in range(args.trials):
        order = ("hlbench", "bare") if trial % 2 == 0 else ("bare", "hlbench")
        tps: dict[str, float] = {}
        for side in order:
            gc.collect()
            if side == "hlbench":
                tps[side], losses, trials.info = hlbench_trial(cell, args.steps)
                trials.hl_losses.append(losses)
            else:
                tps[side], losses, trials.bare_impl = bare_trial(
                    cell, spec, weights, batches, device, args.warmup, args.steps
                )
                trials.bare_losses.append(losses)
        ratio = tps["hlbench"] / tps["bare"]
        trials.rows.append((tps["hlbench"], tps["bare"], ratio))
        print(
            f"{trial + 1:>5}  {order[0]:>7}  {tps['hlbench']:>14,.0f}  {tps['bare']:>12,.0f}  "
            f"{ratio:>6.3f}",
            flush=True,
        )
    return trials


def print_ratios(trials: Trials, header: str) -> tuple[float, float]:
    """The medians and the spread of the per-trial ratios; returns (median ratio, ratio of
    medians)."""
    hl_tps, bare_tps, ratios = zip(*trials.rows)
    median_ratio = statistics.median(ratios)
    ratio_of_medians = statistics.median(hl_tps) / statistics.median(bare_tps)
    print("-" * len(header))
    print(
        f"{'median':>5}  {'':>7}  {statistics.median(hl_tps):>14,.0f}  "
        f"{statistics.median(bare_tps):>12,.0f}  {median_ratio:>6.3f}"
    )
    spread = f"per-trial ratios span {min(ratios):.3f} … {max(ratios):.3f}"
    if len(ratios) >= 4:
        q1, _, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
        spread += f", interquartile {q1:.3f} … {q3:.3f}"
    print(
        f"spread    {spread} (a spread wider than the 1% target means this machine is too noisy to "
        "resolve it: add --trials or --steps)"
    )
    print()
    return median_ratio, ratio_of_medians


def check_same_training(trials: Trials, device: torch.device) -> bool:
    """Same device, optimizer implementation and per-step losses (warmup included)?"""
    info, bare_impl = trials.info, trials.bare_impl
    same_setup = info.get("device") == str(device) and info.get("optimizer_impl") == bare_impl
    print(
        f"check     device hlbench={info.get('device')} bare={device}; "
        f"AdamW hlbench={info.get('optimizer_impl')} "
        f"bare={bare_impl}: {'same' if same_setup else 'DIFFERENT'}"
    )
    hl = np.array(trials.hl_losses, dtype=np.float64)
    bare = np.array(trials.bare_losses, dtype=np.float64)
    max_abs = float(np.max(np.abs(hl - bare)))
    same_losses = hl.shape == bare.shape and bool(
        np.allclose(hl, bare, rtol=LOSS_RTOL, atol=LOSS_ATOL)
    )
    tolerance = "bitwise equal" if max_abs == 0 else f"rtol {LOSS_RTOL:g}, atol {LOSS_ATOL:g}"
    print(
        f"check     losses, {hl.shape[1]} steps x {hl.shape[0]} trials: "
        f"max |hlbench - bare| = {max_abs:.2e} ({tolerance}); "
        f"final loss hlbench {hl[-1, -1]:.6f} bare {bare[-1, -1]:.6f}: "
        f"{'PASS' if same_losses else 'FAIL'}"
    )
    return same_setup and same_losses


def print_sync_note(device: torch.device) -> None:
    if device.type == "cuda":
        print(
            "note      on CUDA hlbench records a CUDA event after every step and syncs once per "
            "window (hlbench.backends.torch.timing); the bare loop syncs once before and once "
            "after the measured steps: the ratio is the events' and the bookkeeping's cost."
        )
    else:
        print(
            "note      on a CPU the per-step device sync is a no-op: the ratio is hlbench's "
            "Python-side bookkeeping (clock reads, loss list, budget check) plus noise. On CUDA "
            "hlbench records an event per step and syncs once per window."
        )
    print()


def main(argv: list[str] | None = None) -> int:
    return run(argv)[0]


def run(argv: list[str] | None = None) -> tuple[int, float | None, float | None]:
    """The benchmark; returns (exit status, median of per-trial ratios, ratio of medians)."""
    args = parse_args(argv)
    try:
        cell = make_cell(args)
    except UsageError as exc:  # e.g. an unknown --size, --accumulation not dividing --batch-size
        print(f"overhead.py: error: {str(exc).split(': ', 1)[-1]}", file=sys.stderr)
        return 2, None, None
    device = resolve_device(args.device)

    # fp32 means fp32 on both sides (hlbench's backend sets the same; the setting is process-wide).
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")

    spec = model_spec(cell)
    print_setup(args, cell, spec, device)
    header = f"{'trial':>5}  {'first':>7}  {'hlbench tok/s':>14}  {'bare tok/s':>12}  {'ratio':>6}"
    print(header)
    print("-" * len(header))
    trials = run_trials(args, cell, spec, device)
    median_ratio, ratio_of_medians = print_ratios(trials, header)
    same = check_same_training(trials, device)
    print_sync_note(device)
    print(f"ratio of medians (hlbench / bare) = {ratio_of_medians:.3f}")
    verdict = "meets" if median_ratio >= TARGET else "BELOW"
    print(
        f"ratio (hlbench / bare) = {median_ratio:.3f} (target ≥ {TARGET}; median of per-trial "
        f"ratios; {verdict} target)"
    )
    return (0 if same else 1), median_ratio, ratio_of_medians


if __name__ == "__main__":
    sys.exit(main())
