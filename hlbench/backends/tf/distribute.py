"""Data-parallel training in the TensorFlow backend with tf.distribute (a cell with `launch`).

The strategies themselves: hlbench.backends.tf.strategies.

Semantics of one optimizer step (the same as single-device, up to fp32 rounding): every process
is given the same global batch; global replica r (= task index × replicas per process + local
replica) takes rows batch.shard(r, W) and splits them into the cell's k micro-batches (micro rows =
global / (W·k)); each micro-batch's summed token loss is divided by the *global* batch's
target-token count, gradients are summed over the micro-batches, then all-reduced with SUM across
replicas (together with each replica's partial loss, one collective). Masking (pruning) precedes
the all-reduce, clipping (torch's formula) follows it, on identical reduced gradients in every
replica; the AdamW update is applied to the mirrored variables from a merge_call
(`strategy.extended.update`, as Keras's optimizers do), so every copy receives the same update.
train_step returns the global step loss (the reduced sum of the replicas' partial losses).

With the `compile` axis, each replica's forward/backward is one XLA computation (a jit-compiled
function called inside the replica, traced once per replica device, so it reads that device's
copies); the all-reduce and the update run in the surrounding graph. Why not jit_compile the whole
step: XLA compiles one computation for one device, and under MirroredStrategy that fails at the
first step ("Trying to access resource wte/replica_1 ... located in device CPU:1 from device
CPU:0", TF 2.21).

What does not run under a strategy is skipped with the reason (`unsupported_reason`), never a
silent fallback: fp16 (its dynamic loss scale is not written for mirrored state) and the test-only
precision hooks. The profile pass raises NotImplementedError (its phase prefixes are single-device
functions).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from hlbench.backends.tf.losses import token_loss_sum
from hlbench.backends.tf.strategies import STRATEGIES, Distribution, all_gather_objects
from hlbench.backends.tf.trainer import TFTrainer
from hlbench.cell import Cell
from hlbench.data import Batch
from hlbench.techniques import precision, test_hooks
from hlbench.workloads import ModelSpec


def unsupported_reason(cell: Cell) -> str | None:
    """Why a data-parallel cell cannot run in this backend, or None."""
    strategy = cell.launch.strategy if cell.launch else None
    if strategy not in STRATEGIES:
        return (
            f"launch strategy {strategy!r} is not a TensorFlow one; "
            f"choose from {', '.join(STRATEGIES)}"
        )
    if precision.level(cell.axes["precision"]).loss_scaling:
        return (
            "fp16's dynamic loss scaling is not implemented under tf.distribute "
            "(mirrored loss-scale state)"
        )
    if test_hooks.precision_mismatch() or test_hooks.nonfinite_step() is not None:
        return "the test-only precision hooks are single-device only"
    w, k = cell.workload, cell.axes["accumulation"]
    # a bad world size is rejected, with its name, by make_distribution
    world = cell.launch.world_size if cell.launch else 1
    if w.global_batch % (world * k):
        return (
            f"global batch {w.global_batch} does not split into {world} replicas × "
            f"{k} micro-batches of equal size"
        )
    return None


class MirroredTFTrainer(TFTrainer):
    """TFTrainer on mirrored variables under a tf.distribute strategy (module docstring: semantics).

    Reuses TFTrainer's forward/backward (`_accumulate` on the replica's shard), masking, clipping,
    first-step dtype check, eval, weights and pruning; replaces where variables live, the step
    function and how a batch reaches the replicas."""

    def __init__(
        self,
        cell: Cell,
        spec: ModelSpec,
        level: precision.Level,
        weights: dict[str, np.ndarray],
        dist: Distribution,
    ) -> None:
        self.dist, self.strategy = dist, dist.strategy
        self.rank, self.world_size = dist.rank, dist.world_size
        # this process's replica devices, in local replica order
        self.replica_devices = list(self.strategy.extended.worker_devices)
        super().__init__(cell, spec, level, weights, dist.local_device)

    def _variable_scope(self) -> Any:
        return self.strategy.scope()  # variables created here are mirrored on every replica device

    def _make_functions(self, cell: Cell) -> None:
        # With `compile`: the replica's forward/backward is one XLA computation; the collective and
        # the update stay in the graph around it (module docstring).
        self._replica_grads = (
            tf.function(self._accumulate, jit_compile=True)
            if self.jit_compile
            else self._accumulate
        )
        self._train_step = tf.function(self._distributed_step)  # fixed shapes: one trace per cell
        self._eval_sum = tf.function(
            lambda x, y: token_loss_sum(self.model(x), y), jit_compile=self.jit_compile
        )

    def _distributed_step(
        self, inputs: Any, targets: Any, n_tokens: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor]:
        loss, norm = self.strategy.run(self._replica_step, args=(inputs, targets, n_tokens))
        local = self.strategy.experimental_local_results
        return local(loss)[0], local(norm)[0]  # the same reduced loss and norm everywhere

    def _replica_step(
        self, inputs: tf.Tensor, targets: tf.Tensor, n_tokens: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """Replica context: this replica's shard → its partial loss and gradient → all-reduced (SUM)
        → clipped → AdamW on the mirrored variables (merge_call). Returns the global step loss and
        the reduced gradient's norm before clipping."""
        loss, grads = self._replica_grads(inputs, targets, n_tokens)  # divided by the global count
        if self.mask_vars:
            grads = self._mask_gradients(grads)
        self.observed["grad"] = precision.single_dtype([g.dtype.name for g in grads])  # trace time
        ctx = tf.distribute.get_replica_context()
        reduced = ctx.all_reduce(tf.distribute.ReduceOp.SUM, [loss, *grads])  # one collective
        loss, grads = reduced[0], list(reduced[1:])
        # no loss scale under a strategy: clipping only
        grads, _, norm = self._unscale_and_clip(grads)
        ctx.merge_call(self.optimizer.apply_distributed, args=(grads,))
        return loss, norm

    def _feed(self, batch: Batch) -> tuple[Any, Any, tf.Tensor]:
        """Per-replica shards of the global batch, each on its replica's device, and the global
        target-token count (every replica divides by it)."""

        def shard(field: str) -> Any:
            def value(ctx: tf.distribute.experimental.ValueContext) -> tf.Tensor:
                r = ctx.replica_id_in_sync_group  # global replica id
                with tf.device(self.replica_devices[r - self.rank * self.dist.local_replicas]):
                    return tf.constant(getattr(batch.shard(r, self.world_size), field), tf.int64)

            return self.strategy.experimental_distribute_values_from_function(value)

        return shard("inputs"), shard("targets"), tf.constant(batch.n_target_tokens, tf.float32)

    def train_step(self, batch: Batch) -> tf.Tensor:
        loss, norm = self._train_step(*self._feed(batch))
        self._grad_norms.append(norm)
        if self.steps == 0:
            self._check_first_step()
        self.steps += 1
        return loss

    def gradients(self, batch: Batch) -> tuple[float, dict[str, np.ndarray]]:
        raise NotImplementedError(
            "parity checks run single-device; a data-parallel trainer does not expose gradients"
        )

    def profile_phases(self, batch: Batch) -> dict[str, float]:
        raise NotImplementedError(
            "the phase breakdown times single-device step prefixes; not under tf.distribute"
        )

    def profile_trace(self, batch: Batch, out_dir: Path) -> dict[str, Any]:
        raise NotImplementedError("profiler traces are taken of single-device cells only")

    def all_gather_objects(self, obj: Any) -> list[Any]:
        return all_gather_objects(self.dist, obj)

    def _local_gpus(self) -> list[str]:
        return [d.rpartition("device:")[2] for d in self.replica_devices if "GPU" in d.upper()]

    def reset_peak_memory(self) -> None:
        for gpu in self._local_gpus():
            tf.config.experimental.reset_memory_stats(gpu)

    def memory(self) -> dict[str, Any]:
        gpus = self._local_gpus()
        if not gpus:
            return super().memory()
        peak_bytes = {gpu: int(tf.config.experimental.get_memory_info(gpu)["peak"]) for gpu in gpus}
        # this process's figures: the largest replica's peak, and each of its GPUs'
        return {
            "tf_gpu_peak_bytes": max(peak_bytes.values()),
            "tf_gpu_peak_bytes_per_device": peak_bytes,
            "framework_memory_reason": None,
        }

    def info(self) -> dict[str, Any]:
        return {
            **super().info(),
            "strategy": self.dist.strategy_name,
            "replicas": self.world_size,
            "local_replicas": self.dist.local_replicas,
            "replica_devices": self.replica_devices,
            "cross_device_ops": self.dist.cross_device_ops,
            "rank": self.rank,
            "jit_scope": (
                "per-replica forward/backward; all-reduce and update in the graph"
                if self.jit_compile
                else None
            ),
        }
