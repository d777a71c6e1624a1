"""Data-parallel training in the TensorFlow backend with tf.distribute (a cell with `launch`).

Two strategies (cell.launch["strategy"]):
- `mirrored`: one process drives W replicas with MirroredStrategy: the first W GPUs, or on a machine
  without them (or a `cpu` cell) W *logical* CPU devices, which must be configured before TensorFlow's
  runtime initialises (hence `prepare`, before any op). Cross-device reduction: NCCL on GPUs (the
  default); ReductionToOneDevice on CPUs (NCCL needs GPUs; HierarchicalCopyAllReduce is GPU-only too).
- `multi_worker`: W processes, one replica each, MultiWorkerMirroredStrategy from the TF_CONFIG the
  runner set (cluster of W workers, this task's index); collectives RING on CPUs, NCCL on GPUs.

Semantics of one optimizer step (the same as single-device, up to fp32 rounding): every process is
given the same global batch; global replica r (= task index × replicas per process + local replica)
takes rows batch.shard(r, W) and splits them into the cell's k micro-batches (micro rows =
global / (W·k)); each micro-batch's summed token loss is divided by the *global* batch's target-token
count, gradients are summed over the micro-batches, then all-reduced with SUM across replicas (together
with each replica's partial loss, one collective). Masking (pruning) precedes the all-reduce, clipping
(torch's formula) follows it, on identical reduced gradients in every replica; the AdamW update is
applied to the mirrored variables from a merge_call (`strategy.extended.update`, as Keras's optimizers
do), so every copy receives the same update. train_step returns the global step loss (the reduced sum
of the replicas' partial losses). With the `compile` axis, each replica's forward/backward is one XLA
computation (a jit-compiled function called inside the replica, traced once per replica device, so it
reads that device's copies); the all-reduce and the update run in the surrounding graph. Why not
jit_compile the whole step: XLA compiles one computation for one device, and under MirroredStrategy
that fails at the first step ("Trying to access resource wte/replica_1 ... located in device CPU:1
from device CPU:0", TF 2.21).

What does not run under a strategy is skipped with the reason (`unsupported_reason`), never a silent
fallback: fp16 (its dynamic loss scale is not written for mirrored state) and the test-only precision
hooks. The profile pass raises NotImplementedError (its phase prefixes are single-device functions).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from hlbench.techniques import precision
from hlbench.backends.tf.backend import TFTrainer, _token_loss_sum
from hlbench.cell import Cell
from hlbench.data import Batch

STRATEGIES = ("mirrored", "multi_worker")
TF_CONFIG_ENV = "TF_CONFIG"


@dataclass(frozen=True)
class Distribution:
    """A created strategy and where this process stands in it."""

    strategy: tf.distribute.Strategy
    kind: str  # mirrored | multi_worker
    rank: int  # this process's task index (0 for mirrored: one process)
    world_size: int  # replicas in all
    local_replicas: int  # replicas this process drives
    cross_device_ops: str  # what reduces across replicas, in TensorFlow's terms
    local_device: str  # the device of this process's first replica, e.g. /CPU:0, /GPU:0
    skip_reason: str | None = None  # why this machine cannot run the cell (build raises SkipCell)

    @property
    def strategy_name(self) -> str:
        # MultiWorkerMirroredStrategy's class is named CollectiveAllReduceStrategy: name what was asked
        return {"mirrored": "MirroredStrategy", "multi_worker": "MultiWorkerMirroredStrategy"}[self.kind]


def unsupported_reason(cell: Cell) -> str | None:
    """Why a data-parallel cell cannot run in this backend, or None."""
    launch = cell.launch or {}
    if launch.get("strategy") not in STRATEGIES:
        return (f"launch strategy {launch.get('strategy')!r} is not a TensorFlow one; "
                f"choose from {', '.join(STRATEGIES)}")
    if precision.level(cell.axes["precision"]).loss_scaling:
        return "fp16's dynamic loss scaling is not implemented under tf.distribute (mirrored loss-scale state)"
    if precision.mismatch_injected() or precision.nonfinite_step() is not None:
        return "the test-only precision hooks are single-device only"
    w, k = cell.workload, cell.axes["accumulation"]
    world = int(launch.get("world_size") or 1)  # make_distribution rejects a bad value with its name
    if w["global_batch"] % (world * k):
        return (f"global batch {w['global_batch']} does not split into {world} replicas × {k} micro-batches "
                f"of equal size")
    return None


def make_distribution(cell: Cell) -> Distribution:
    """Create the cell's strategy; call before any other TensorFlow op (logical devices, MWMS)."""
    launch = cell.launch or {}
    kind, world = launch.get("strategy"), int(launch.get("world_size", 0))
    if kind not in STRATEGIES:
        raise ValueError(f"cell.launch.strategy: {kind!r} is not a TensorFlow strategy ({', '.join(STRATEGIES)})")
    if world < 1:
        raise ValueError(f"cell.launch.world_size: expected a positive replica count, got {launch.get('world_size')!r}")
    if kind == "mirrored":
        return _mirrored(cell.device, world)
    return _multi_worker(cell.device, world)


def _use_gpus(device: str) -> bool:
    if device == "cpu":
        return False
    return bool(tf.config.list_physical_devices("GPU")) or device.startswith("cuda")


def _mirrored(device: str, world: int) -> Distribution:
    """W replicas in this process: the first W GPUs, or W logical CPU devices."""
    if _use_gpus(device):
        gpus = tf.config.list_physical_devices("GPU")
        if len(gpus) < world:
            skip = f"mirrored over {world} GPUs requested but TensorFlow sees {len(gpus)}"
            return Distribution(tf.distribute.get_strategy(), "mirrored", 0, world, world, "none", "/CPU:0", skip)
        devices = [f"/GPU:{i}" for i in range(world)]
        cross = tf.distribute.NcclAllReduce()
        name = "NcclAllReduce"
    else:
        _split_cpu(world)
        devices = [f"/CPU:{i}" for i in range(world)]
        # NCCL and HierarchicalCopyAllReduce need GPUs; this sums on /CPU:0 and broadcasts back.
        cross = tf.distribute.ReductionToOneDevice(reduce_to_device="/CPU:0")
        name = "ReductionToOneDevice(/CPU:0)"
    strategy = tf.distribute.MirroredStrategy(devices=devices, cross_device_ops=cross)
    return Distribution(strategy, "mirrored", 0, world, world, name, devices[0])


def _split_cpu(world: int) -> None:
    """W logical CPU devices over the one physical CPU (they share its thread pools)."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    wanted = [tf.config.LogicalDeviceConfiguration() for _ in range(world)]
    current = tf.config.get_logical_device_configuration(cpu)
    if current is not None and len(current) == world:
        return  # already configured (a second trainer in one process)
    try:
        tf.config.set_logical_device_configuration(cpu, wanted)
    except RuntimeError as exc:  # the runtime is initialised: too late to split the CPU
        raise RuntimeError(f"cannot create {world} logical CPU devices for MirroredStrategy: TensorFlow's "
                           f"runtime is already initialised (call TFBackend.prepare(cell) first): {exc}") from None


def read_tf_config(world: int) -> tuple[list[str], int]:
    """(worker addresses, this task's index) from TF_CONFIG; ValueError naming what is wrong."""
    raw = os.environ.get(TF_CONFIG_ENV)
    if not raw:
        raise ValueError(f"multi_worker cell: the environment variable {TF_CONFIG_ENV} is not set "
                         "(the runner sets it for each worker process)")
    try:
        config = json.loads(raw)
        workers = list(config["cluster"]["worker"])
        task = config["task"]
        index = int(task["index"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{TF_CONFIG_ENV} is not of the form {{\"cluster\": {{\"worker\": [...]}}, \"task\": "
                         f"{{\"type\": \"worker\", \"index\": i}}}}: {exc!r}") from None
    if set(config["cluster"]) != {"worker"} or task.get("type") != "worker":
        raise ValueError(f"{TF_CONFIG_ENV}: expected only `worker` tasks, got cluster {sorted(config['cluster'])} "
                         f"and task type {task.get('type')!r}")
    if len(workers) != world:
        raise ValueError(f"{TF_CONFIG_ENV} lists {len(workers)} workers but cell.launch.world_size is {world}")
    if not 0 <= index < world:
        raise ValueError(f"{TF_CONFIG_ENV}: task index {index} is outside the {world} workers")
    return workers, index


def _multi_worker(device: str, world: int) -> Distribution:
    """One replica in this process, one of W workers (TF_CONFIG)."""
    _, index = read_tf_config(world)
    gpus = tf.config.list_physical_devices("GPU")
    use_gpu = _use_gpus(device) and bool(gpus)
    # One replica per process: MWMS would otherwise make a replica of every visible GPU.
    tf.config.set_visible_devices(gpus[:1] if use_gpu else [], "GPU")
    impl = tf.distribute.experimental.CommunicationImplementation
    chosen = impl.NCCL if use_gpu else impl.RING  # NCCL needs GPUs; RING is gRPC + CPU reductions
    options = tf.distribute.experimental.CommunicationOptions(implementation=chosen)
    strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    if strategy.num_replicas_in_sync != world:
        raise ValueError(f"MultiWorkerMirroredStrategy has {strategy.num_replicas_in_sync} replicas but "
                         f"cell.launch.world_size is {world}")
    local = "/GPU:0" if use_gpu else "/CPU:0"
    if device.startswith("cuda") and not use_gpu:
        skip = f"device {device!r} requested but TensorFlow sees no GPU"
        return Distribution(strategy, "multi_worker", index, world, 1, f"collective {chosen.name}", local, skip)
    return Distribution(strategy, "multi_worker", index, world, 1, f"collective {chosen.name}", local)


def all_gather_objects(dist: Distribution, obj: Any) -> list[Any]:
    """Every process's JSON-serialisable `obj`, in task-index order (a collective for multi_worker).

    The JSON bytes travel as int32 rows (collectives take numeric tensors), padded to the longest:
    first the lengths are gathered, then the padded rows."""
    if dist.kind != "multi_worker":
        return [obj]
    strategy = dist.strategy
    data = np.frombuffer(json.dumps(obj).encode(), dtype=np.uint8).astype(np.int32)

    def gather(row: np.ndarray) -> np.ndarray:
        per_replica = strategy.experimental_distribute_values_from_function(lambda _: tf.constant(row[None, :]))
        return strategy.gather(per_replica, axis=0).numpy()  # (replicas, n), global replica order

    lengths = gather(np.array([len(data)], np.int32))[:, 0]
    padded = np.zeros(int(lengths.max()), np.int32)
    padded[:len(data)] = data
    rows = gather(padded)
    per_process = range(0, dist.world_size, dist.local_replicas)  # a process's first replica
    return [json.loads(rows[r, :lengths[r]].astype(np.uint8).tobytes().decode()) for r in per_process]


SHUTDOWN_BARRIER_MS = 60_000  # how long a finished worker waits for the others before it exits anyway


def shutdown_barrier(dist: Distribution) -> None:
    """multi_worker: wait (bounded) until every worker has finished, so that task 0, which hosts
    TensorFlow's coordination service, does not exit while another worker still needs it (the others
    would then fail their heartbeats). The coordination service's barrier takes a timeout, unlike a
    collective, so a worker whose peer died does not hang here."""
    if dist.kind != "multi_worker":
        return
    from tensorflow.python.eager import context  # the barrier has no public API

    if context.context().coordination_service is None:
        return
    try:
        context.context().wait_at_barrier("hlbench_shutdown", SHUTDOWN_BARRIER_MS)
    except tf.errors.OpError:  # a peer failed or timed out: its record says why; exit anyway
        pass


class MirroredTFTrainer(TFTrainer):
    """TFTrainer on mirrored variables under a tf.distribute strategy (module docstring: semantics).

    Reuses TFTrainer's forward/backward (`_accumulate` on the replica's shard), masking, clipping,
    first-step dtype check, eval, weights and pruning; replaces where variables live, the step
    function and how a batch reaches the replicas."""

    def __init__(self, cell: Cell, weights: dict[str, np.ndarray], dist: Distribution) -> None:
        self.dist, self.strategy = dist, dist.strategy
        self.rank, self.world_size = dist.rank, dist.world_size
        # this process's replica devices, in local replica order
        self.replica_devices = list(self.strategy.extended.worker_devices)
        super().__init__(cell, weights, dist.local_device)

    def _variable_scope(self) -> Any:
        return self.strategy.scope()  # variables created here are mirrored on every replica device

    def _make_functions(self, cell: Cell) -> None:
        # With `compile`: the replica's forward/backward is one XLA computation; the collective and
        # the update stay in the graph around it (module docstring).
        self._replica_grads = (tf.function(self._accumulate, jit_compile=True) if self.jit_compile
                               else self._accumulate)
        self._train_step = tf.function(self._distributed_step)  # fixed shapes: one trace per cell
        self._eval_sum = tf.function(lambda x, y: _token_loss_sum(self.model(x), y), jit_compile=self.jit_compile)

    def _distributed_step(self, inputs: Any, targets: Any, n_tokens: tf.Tensor) -> tf.Tensor:
        loss = self.strategy.run(self._replica_step, args=(inputs, targets, n_tokens))
        return self.strategy.experimental_local_results(loss)[0]  # the same reduced loss everywhere

    def _replica_step(self, inputs: tf.Tensor, targets: tf.Tensor, n_tokens: tf.Tensor) -> tf.Tensor:
        """Replica context: this replica's shard → its partial loss and gradient → all-reduced (SUM)
        → clipped → AdamW on the mirrored variables (merge_call). Returns the global step loss."""
        loss, grads = self._replica_grads(inputs, targets, n_tokens)  # divided by the global count
        if self.mask_vars:
            grads = self._mask_gradients(grads)
        self.observed["grad"] = precision.single_dtype([g.dtype.name for g in grads])  # trace time
        ctx = tf.distribute.get_replica_context()
        reduced = ctx.all_reduce(tf.distribute.ReduceOp.SUM, [loss, *grads])  # one collective
        loss, grads = reduced[0], list(reduced[1:])
        grads, _ = self._unscale_and_clip(grads)  # no loss scale under a strategy: clipping only
        ctx.merge_call(self.optimizer.apply_distributed, args=(grads,))
        return loss

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
        loss = self._train_step(*self._feed(batch))
        if self.steps == 0:
            self._check_first_step()
        self.steps += 1
        return loss

    def gradients(self, batch: Batch) -> tuple[float, dict[str, np.ndarray]]:
        raise NotImplementedError("parity checks run single-device; a data-parallel trainer does not expose gradients")

    def profile_phases(self, batch: Batch) -> dict[str, float]:
        raise NotImplementedError("the phase breakdown times single-device step prefixes; not under tf.distribute")

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
        peaks = {gpu: int(tf.config.experimental.get_memory_info(gpu)["peak"]) for gpu in gpus}
        # this process's figures: the largest replica's peak, and each of its GPUs'
        return {"tf_gpu_peak_bytes": max(peaks.values()), "tf_gpu_peak_bytes_per_device": peaks,
                "framework_memory_reason": None}

    def info(self) -> dict[str, Any]:
        return {
            **super().info(),
            "strategy": self.dist.strategy_name,
            "replicas": self.world_size,
            "local_replicas": self.dist.local_replicas,
            "replica_devices": self.replica_devices,
            "cross_device_ops": self.dist.cross_device_ops,
            "rank": self.rank,
            "jit_scope": ("per-replica forward/backward; all-reduce and update in the graph"
                          if self.jit_compile else None),
        }
