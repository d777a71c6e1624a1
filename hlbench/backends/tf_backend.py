"""The TensorFlow backend: the same workloads, weights, batches, optimizer and loss as the PyTorch one.

Accumulation semantics (DESIGN §3), as in torch_backend: the step's loss is the sum of per-token losses
over all k micro-batches divided by the step-wide number of target tokens; each micro-batch's summed
loss is divided by that count before its gradient is taken, and the gradients are summed.

The optimizer step is one `tf.function` (a graph); the `compile` axis adds XLA (`jit_compile=True`).
Tracing and XLA compilation happen on the first call, which the measurement loop times as warmup
(startup), never as a measured step.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

# Quieter C++ logging in worker logs; must precede the import. Users can still override it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

import tensorflow as tf  # noqa: E402

from hlbench.backends import TF  # noqa: E402
from hlbench.backends.base import Backend, SkipCell, Trainer  # noqa: E402
from hlbench.backends.tf_models import build_model  # noqa: E402
from hlbench.backends.tf_optim import AdamW, clip_by_global_norm  # noqa: E402
from hlbench.cell import Cell  # noqa: E402
from hlbench.data import IGNORE_INDEX, Batch  # noqa: E402
from hlbench.train import model_spec  # noqa: E402


def configure_runtime() -> None:
    """Settings that must precede TensorFlow's runtime initialisation (the first op or device query
    that creates a context): memory growth, without which TensorFlow reserves nearly all GPU memory at
    start and every memory figure measures the reservation instead of the training; and TF32 off,
    because fp32 means fp32 and TensorFlow turns TF32 on by default on Ampere and newer GPUs."""
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised (in-process callers building a second trainer)
            pass
    tf.config.experimental.enable_tensor_float_32_execution(False)


def resolve_device(requested: str) -> str:
    """auto → the first GPU when TensorFlow sees one, else the CPU; an absent device skips the cell."""
    gpus = tf.config.list_physical_devices("GPU")
    if requested == "auto":
        return "/GPU:0" if gpus else "/CPU:0"
    if requested == "cpu":
        return "/CPU:0"
    index = int(requested.partition(":")[2] or 0)  # cuda or cuda:N (the suite validated the form)
    if index >= len(gpus):
        raise SkipCell(f"device {requested!r} requested but TensorFlow sees {len(gpus)} GPU(s)")
    return f"/GPU:{index}"


def _token_loss_sum(logits: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
    """Sum of per-token cross-entropies over positions whose target is not IGNORE_INDEX (float32)."""
    mask = tf.not_equal(targets, IGNORE_INDEX)
    safe_targets = tf.where(mask, targets, tf.zeros_like(targets))  # the op rejects negative labels
    per_token = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe_targets, logits=tf.cast(logits, tf.float32))
    return tf.reduce_sum(tf.where(mask, per_token, tf.zeros_like(per_token)))


class TFTrainer(Trainer):
    def __init__(self, cell: Cell, weights: dict[str, np.ndarray], device: str) -> None:
        spec = model_spec(cell)
        self.device = device
        self.accumulation = cell.axes["accumulation"]
        self.grad_clip_norm = cell.optimizer["grad_clip_norm"]
        self.jit_compile = bool(cell.axes.get("compile", False))
        self.names = list(spec.param_shapes())
        with tf.device(device):
            self.model = build_model(spec, weights)
            self.params = [self.model.variables[n] for n in self.names]
            self.optimizer = AdamW(self.params, [spec.decayed(n) for n in self.names], cell.optimizer)
        w = cell.workload
        batch_spec = tf.TensorSpec((w["global_batch"], w["seq_len"]), tf.int64)
        scalar = tf.TensorSpec((), tf.float32)
        # One trace per function for the whole cell: fixed shapes, no retracing.
        self._train_step = tf.function(self._train_step_fn, input_signature=[batch_spec, batch_spec, scalar],
                                       jit_compile=self.jit_compile)
        self._gradients = tf.function(self._accumulate, input_signature=[batch_spec, batch_spec, scalar],
                                      jit_compile=self.jit_compile)
        self._eval_sum = tf.function(lambda x, y: _token_loss_sum(self.model(x), y), jit_compile=self.jit_compile)

    def _accumulate(self, inputs: tf.Tensor, targets: tf.Tensor, n_tokens: tf.Tensor) -> tuple[tf.Tensor, list[tf.Tensor]]:
        """Forward and backward over the k micro-batches in order; returns (step loss, summed gradients)."""
        k = self.accumulation
        micro = inputs.shape[0] // k

        def micro_step(i: tf.Tensor) -> tuple[tf.Tensor, list[tf.Tensor]]:
            x, y = inputs[i * micro:(i + 1) * micro], targets[i * micro:(i + 1) * micro]
            with tf.GradientTape() as tape:
                micro_sum = _token_loss_sum(self.model(x), y)
                scaled = micro_sum / n_tokens
            grads = tape.gradient(scaled, self.params)
            # Embedding lookups give IndexedSlices; dense, as PyTorch's nn.Embedding gradient is by default.
            return micro_sum, [tf.convert_to_tensor(g) for g in grads]

        if k == 1:
            loss_sum, grads = micro_step(tf.constant(0))
            return loss_sum / n_tokens, grads

        def body(i: tf.Tensor, loss_sum: tf.Tensor, acc: list[tf.Tensor]) -> tuple[Any, ...]:
            micro_sum, grads = micro_step(i)
            return i + 1, loss_sum + micro_sum, [a + g for a, g in zip(acc, grads)]

        zeros = [tf.zeros_like(p) for p in self.params]
        # A while loop, one iteration at a time: micro-batch i+1's forward never overlaps micro-batch
        # i's backward, so the memory held is one micro-batch's activations plus the accumulators, as
        # in PyTorch. (An unrolled Python loop would let the graph executor run them concurrently.)
        _, loss_sum, grads = tf.while_loop(
            lambda i, *_: i < k, body, (tf.constant(0), tf.constant(0.0), zeros), parallel_iterations=1
        )
        return loss_sum / n_tokens, grads

    def _train_step_fn(self, inputs: tf.Tensor, targets: tf.Tensor, n_tokens: tf.Tensor) -> tf.Tensor:
        loss, grads = self._accumulate(inputs, targets, n_tokens)
        if self.grad_clip_norm is not None:
            grads = clip_by_global_norm(grads, self.grad_clip_norm)
        self.optimizer.apply(grads)
        return loss

    def _feed(self, batch: Batch) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        with tf.device(self.device):
            return (tf.constant(batch.inputs, tf.int64), tf.constant(batch.targets, tf.int64),
                    tf.constant(batch.n_target_tokens, tf.float32))  # counted on the host: no sync

    def train_step(self, batch: Batch) -> tf.Tensor:
        with tf.device(self.device):
            return self._train_step(*self._feed(batch))

    def gradients(self, batch: Batch) -> tuple[float, dict[str, np.ndarray]]:
        with tf.device(self.device):
            loss, grads = self._gradients(*self._feed(batch))
        return float(loss), {n: g.numpy() for n, g in zip(self.names, grads)}

    def weights(self) -> dict[str, np.ndarray]:
        return {n: np.asarray(tf.cast(p, tf.float32).numpy()) for n, p in zip(self.names, self.params)}

    def sync(self) -> None:
        if self.device.startswith("/GPU"):
            tf.test.experimental.sync_devices()  # waits for every queued op on every device

    def losses_to_floats(self, losses: list[Any]) -> list[float]:
        return [float(loss) for loss in losses]

    def eval_loss(self, batches: list[Batch]) -> float:
        total, tokens = 0.0, 0
        with tf.device(self.device):
            for batch in batches:
                total += float(self._eval_sum(tf.constant(batch.inputs, tf.int64), tf.constant(batch.targets, tf.int64)))
                tokens += batch.n_target_tokens
        return total / tokens

    def reset_peak_memory(self) -> None:
        if self.device.startswith("/GPU"):
            tf.config.experimental.reset_memory_stats(self.device.removeprefix("/"))

    def memory(self) -> dict[str, Any]:
        if not self.device.startswith("/GPU"):
            return {
                "tf_gpu_peak_bytes": None,
                "framework_memory_reason": "TensorFlow keeps no allocator statistics for the CPU; see host_peak_rss_bytes",
            }
        info = tf.config.experimental.get_memory_info(self.device.removeprefix("/"))
        # peak bytes in use by TensorFlow's BFC allocator on this GPU since the reset at the first window
        return {"tf_gpu_peak_bytes": int(info["peak"]), "framework_memory_reason": None}

    def info(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "optimizer_impl": "hlbench.tf_optim.AdamW (torch formula)",
            "param_dtype": self.params[0].dtype.name,
            "tf32_enabled": tf.config.experimental.tensor_float_32_execution_enabled(),
            "jit_compile": self.jit_compile,
            "tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        }


class TFBackend(Backend):
    name = "tf"

    def __init__(self) -> None:
        configure_runtime()

    def environment(self, device: str) -> dict[str, Any]:
        build = tf.sysconfig.get_build_info()
        env: dict[str, Any] = {
            "framework": "tensorflow",
            "tensorflow_version": tf.__version__,
            "keras_version": _keras_version(),
            "cuda_version": build.get("cuda_version"),
            "cudnn_version": build.get("cudnn_version"),
            "gpus": [],
        }
        for i, gpu in enumerate(tf.config.list_physical_devices("GPU")):
            details = tf.config.experimental.get_device_details(gpu)
            capability = details.get("compute_capability")
            env["gpus"].append({
                "index": i,
                "name": details.get("device_name"),
                "capability": ".".join(map(str, capability)) if capability else None,
            })
        return env

    def build(self, cell: Cell, weights: dict[str, np.ndarray]) -> TFTrainer:
        reason = TF.unsupported_reason(cell.axes)
        if reason:
            raise SkipCell(reason)
        return TFTrainer(cell, weights, resolve_device(cell.device))

    def is_oom(self, exc: BaseException) -> bool:
        return isinstance(exc, (tf.errors.ResourceExhaustedError, MemoryError))


def _keras_version() -> str | None:
    try:
        import keras
    except ImportError:
        return None
    return keras.__version__
