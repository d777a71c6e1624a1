"""tf.distribute strategies for a data-parallel cell (`launch`), and where this process stands.

Two strategies (cell.launch.strategy):
- `mirrored`: one process drives W replicas with MirroredStrategy: the first W GPUs, or on a
  machine without them (or a `cpu` cell) W *logical* CPU devices, which must be configured before
  TensorFlow's runtime initialises (hence TFBackend.prepare, before any op). Cross-device
  reduction: NCCL on GPUs (the default); ReductionToOneDevice on CPUs (NCCL needs GPUs;
  HierarchicalCopyAllReduce is GPU-only too).
- `multi_worker`: W processes, one replica each, MultiWorkerMirroredStrategy from the TF_CONFIG the
  runner set (cluster of W workers, this task's index); collectives RING on CPUs, NCCL on GPUs.

Also the cross-process pieces a multi-worker cell needs besides training: gathering every worker's
objects (`all_gather_objects`) and a bounded barrier before exit (`shutdown_barrier`).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from hlbench.cell import Cell

STRATEGIES = ("mirrored", "multi_worker")
STRATEGY_NAMES = {"mirrored": "MirroredStrategy", "multi_worker": "MultiWorkerMirroredStrategy"}
TF_CONFIG_ENV = "TF_CONFIG"
SHUTDOWN_BARRIER_MS = 60_000  # how long a finished worker waits for the others before it exits


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
        # MultiWorkerMirroredStrategy's class is named CollectiveAllReduceStrategy: name what was
        # asked for
        return STRATEGY_NAMES[self.kind]


def make_distribution(cell: Cell) -> Distribution:
    """Create the cell's strategy; call before any other TensorFlow op (logical devices, MWMS)."""
    kind = cell.launch.strategy if cell.launch else None
    world = cell.launch.world_size if cell.launch else 0
    if kind not in STRATEGIES:
        raise ValueError(
            f"cell.launch.strategy: {kind!r} is not a TensorFlow strategy ({', '.join(STRATEGIES)})"
        )
    if world < 1:
        raise ValueError(
            f"cell.launch.world_size: expected a positive replica count, got {world!r}"
        )
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
            return Distribution(
                tf.distribute.get_strategy(), "mirrored", 0, world, world, "none", "/CPU:0", skip
            )
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
        raise RuntimeError(
            f"cannot create {world} logical CPU devices for MirroredStrategy: TensorFlow's "
            f"runtime is already initialised (call TFBackend.prepare(cell) first): {exc}"
        ) from None


def read_tf_config(world: int) -> tuple[list[str], int]:
    """(worker addresses, this task's index) from TF_CONFIG; ValueError naming what is wrong."""
    raw = os.environ.get(TF_CONFIG_ENV)
    if not raw:
        raise ValueError(
            f"multi_worker cell: the environment variable {TF_CONFIG_ENV} is not set "
            "(the runner sets it for each worker process)"
        )
    try:
        config = json.loads(raw)
        workers = list(config["cluster"]["worker"])
        task = config["task"]
        index = int(task["index"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(
            f'{TF_CONFIG_ENV} is not of the form {{"cluster": {{"worker": [...]}}, "task": '
            f'{{"type": "worker", "index": i}}}}: {exc!r}'
        ) from None
    if set(config["cluster"]) != {"worker"} or task.get("type") != "worker":
        raise ValueError(
            f"{TF_CONFIG_ENV}: expected only `worker` tasks, got cluster "
            f"{sorted(config['cluster'])} and task type {task.get('type')!r}"
        )
    if len(workers) != world:
        raise ValueError(
            f"{TF_CONFIG_ENV} lists {len(workers)} workers but cell.launch.world_size is {world}"
        )
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
        raise ValueError(
            f"MultiWorkerMirroredStrategy has {strategy.num_replicas_in_sync} replicas but "
            f"cell.launch.world_size is {world}"
        )
    local = "/GPU:0" if use_gpu else "/CPU:0"
    skip = None
    if device.startswith("cuda") and not use_gpu:
        skip = f"device {device!r} requested but TensorFlow sees no GPU"
    cross = f"collective {chosen.name}"
    return Distribution(strategy, "multi_worker", index, world, 1, cross, local, skip)


def all_gather_objects(dist: Distribution, obj: Any) -> list[Any]:
    """Every process's JSON-serialisable `obj`, in task-index order (a collective for multi_worker).

    The JSON bytes travel as int32 rows (collectives take numeric tensors), padded to the longest:
    first the lengths are gathered, then the padded rows."""
    if dist.kind != "multi_worker":
        return [obj]
    strategy = dist.strategy
    data = np.frombuffer(json.dumps(obj).encode(), dtype=np.uint8).astype(np.int32)

    def gather(row: np.ndarray) -> np.ndarray:
        per_replica = strategy.experimental_distribute_values_from_function(
            lambda _: tf.constant(row[None, :])
        )
        return strategy.gather(per_replica, axis=0).numpy()  # (replicas, n), global replica order

    lengths = gather(np.array([len(data)], np.int32))[:, 0]
    padded = np.zeros(int(lengths.max()), np.int32)
    padded[: len(data)] = data
    rows = gather(padded)
    per_process = range(0, dist.world_size, dist.local_replicas)  # a process's first replica
    return [
        json.loads(rows[r, : lengths[r]].astype(np.uint8).tobytes().decode()) for r in per_process
    ]


def shutdown_barrier(dist: Distribution) -> None:
    """multi_worker: wait (bounded) until every worker has finished, so that task 0, which hosts
    TensorFlow's coordination service, does not exit while another worker still needs it (the
    others would then fail their heartbeats). The coordination service's barrier takes a timeout,
    unlike a collective, so a worker whose peer died does not hang here."""
    if dist.kind != "multi_worker":
        return
    from tensorflow.python.eager import context  # the barrier has no public API

    if context.context().coordination_service is None:
        return
    # a peer failed or timed out: its record says why; exit anyway
    with contextlib.suppress(tf.errors.OpError):
        context.context().wait_at_barrier("hlbench_shutdown", SHUTDOWN_BARRIER_MS)
