"""The TensorFlow trainer on one device: the same workloads, weights, batches, optimizer and loss as
the PyTorch one.

Accumulation semantics, as in the PyTorch backend: the step's loss is the sum of per-token losses
over all k micro-batches divided by the step-wide number of target tokens; each micro-batch's summed
loss is divided by that count before its gradient is taken, and the gradients are summed.

The optimizer step is one `tf.function` (a graph); the `compile` axis adds XLA (`jit_compile=True`).
Tracing and XLA compilation happen on the first call, which the measurement loop times as warmup
(startup), never as a measured step.

Precision (hlbench.techniques.precision), the same meaning as in the PyTorch backend:
- fp32: TF32 off (TensorFlow turns it on by default on Ampere+); tf32: on, GPU compute capability
  ≥ 8.0 (the adapter, hlbench.backends.tf.backend, sets it per cell);
- bf16 / fp16: float32 variables, matmuls in the compute dtype (casts where variables are used,
  hlbench.backends.tf.models; the LSTM through Keras's mixed policy); fp16 adds dynamic loss
  scaling with GradScaler's algorithm (hlbench.backends.tf.optim.DynamicLossScale): gradients
  unscaled before clipping, a step with a non-finite gradient skipped (tf.cond), the scale halved;
- bf16-pure: variables and AdamW moments in bfloat16 (their gradients follow);
- fp8: not available in TensorFlow (the registry skips it).
Dtypes are static in a graph: they are recorded at trace time from the Python side and checked
after the first step (hlbench.techniques.precision.check_observed); a contradiction raises
PrecisionViolation.

Data parallel: hlbench.backends.tf.distribute subclasses this trainer (MirroredTFTrainer).

Test-only hooks (never set them in a real run; read in hlbench.techniques.test_hooks):
- HLBENCH_TEST_PRECISION_MISMATCH=1: the level's dtypes are not applied (bf16 compute for fp32);
- HLBENCH_TEST_NONFINITE_STEP=k: optimizer step k's gradients are made non-finite (the op exists in
  the graph only when the variable is set).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from hlbench.backends.base import Trainer
from hlbench.backends.tf import prune
from hlbench.backends.tf.losses import token_loss_sum
from hlbench.backends.tf.models import build_model
from hlbench.backends.tf.optim import AdamW, clip_by_global_norm, gradscaler_loss_scale
from hlbench.backends.tf.phases import PhaseProfiling
from hlbench.backends.tf.trace import trace_steps
from hlbench.backends.timers import StepTimer, WindowTimer
from hlbench.cell import Cell
from hlbench.data import Batch
from hlbench.techniques import precision, test_hooks
from hlbench.techniques import pruning as P
from hlbench.techniques.driver import pruning_for
from hlbench.workloads import ModelSpec

DTYPES = {
    precision.FLOAT32: tf.float32,
    precision.BFLOAT16: tf.bfloat16,
    precision.FLOAT16: tf.float16,
}


class TFTrainer(PhaseProfiling, prune.MaskedPruning, Trainer):
    """One model and its AdamW on one TensorFlow device; one compiled function per step."""

    def __init__(
        self,
        cell: Cell,
        spec: ModelSpec,
        level: precision.Level,
        weights: dict[str, np.ndarray],
        device: str,
    ) -> None:
        self.device = device
        self.accumulation = cell.axes["accumulation"]
        self.grad_clip_norm = cell.optimizer.grad_clip_norm
        self.jit_compile = bool(cell.axes.get("compile", False))
        self.names = list(spec.param_shapes())
        self.level = level
        self.observed: dict[str, Any] = {}
        self.steps = 0  # train_step calls so far
        self._grad_norms: list[tf.Tensor] = []  # per train_step, on the device (health)
        self._nonfinite_step = test_hooks.nonfinite_step()
        with self._variable_scope():
            self._create_variables(cell, spec, weights)
        self._make_functions(cell)

    def _create_variables(
        self, cell: Cell, spec: ModelSpec, weights: dict[str, np.ndarray]
    ) -> None:
        """Every variable of the trainer, before any function is traced: model, AdamW moments, loss
        scale, the test-only step counter and the pruning masks."""
        # Test-only: run other dtypes than the label says, so the check must catch it (module
        # docstring).
        param_name, compute_name = precision.applied_dtypes(self.level)
        self.model = build_model(spec, weights, DTYPES[param_name], DTYPES[compute_name])
        self.params = [self.model.variables[n] for n in self.names]
        decayed = [spec.decayed(n) for n in self.names]
        self.optimizer = AdamW(self.params, decayed, cell.optimizer)
        self.loss_scale = gradscaler_loss_scale() if self.level.loss_scaling else None
        self._step_counter = None
        if self._nonfinite_step is not None:
            self._step_counter = tf.Variable(0, trainable=False, dtype=tf.int64)
        # One mask per parameter a pruning event may touch, made before tracing (all ones until
        # apply_masks), so the compiled step multiplies those gradients by them (no retracing).
        self.mask_vars = {
            n: tf.Variable(
                tf.ones_like(self.params[self.names.index(n)]), trainable=False, name=f"mask/{n}"
            )
            for n in P.maskable(spec, pruning_for(cell))
        }

    def _variable_scope(self) -> Any:
        """Where the model's and optimizer's variables are created: this trainer's one device."""
        return tf.device(self.device)

    def _make_functions(self, cell: Cell) -> None:
        w = cell.workload
        batch_spec = tf.TensorSpec((w.global_batch, w.seq_len), tf.int64)
        signature = [batch_spec, batch_spec, tf.TensorSpec((), tf.float32)]
        # One trace per function for the whole cell: fixed shapes, no retracing.
        jit = self.jit_compile
        self._train_step = tf.function(
            self._train_step_fn, input_signature=signature, jit_compile=jit
        )
        self._gradients = tf.function(self._accumulate, input_signature=signature, jit_compile=jit)
        self._eval_sum = tf.function(lambda x, y: token_loss_sum(self.model(x), y), jit_compile=jit)

    def _micro_loss(self, x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        """One micro-batch's forward: its summed token loss (float32)."""
        logits = self.model(x)  # (b, T, V)
        # recorded at trace time: the dtype of the head's matmul
        self.observed.setdefault("matmul_output", logits.dtype.name)
        return token_loss_sum(logits, y)

    def _forward_loss(
        self, inputs: tf.Tensor, targets: tf.Tensor, n_tokens: tf.Tensor
    ) -> tf.Tensor:
        """The step's loss over the k micro-batches without gradients (the profile pass's forward
        phase)."""
        micro = inputs.shape[0] // self.accumulation
        micro_sums = [
            self._micro_loss(
                inputs[i * micro : (i + 1) * micro], targets[i * micro : (i + 1) * micro]
            )
            for i in range(self.accumulation)
        ]
        return tf.add_n(micro_sums) / n_tokens

    def _accumulate(
        self, inputs: tf.Tensor, targets: tf.Tensor, n_tokens: tf.Tensor
    ) -> tuple[tf.Tensor, list[tf.Tensor]]:
        """Forward and backward over the k micro-batches in order; returns (step loss, summed
        gradients)."""
        k = self.accumulation
        micro = inputs.shape[0] // k

        def micro_step(i: tf.Tensor) -> tuple[tf.Tensor, list[tf.Tensor]]:
            x, y = inputs[i * micro : (i + 1) * micro], targets[i * micro : (i + 1) * micro]
            with tf.GradientTape() as tape:
                micro_sum = self._micro_loss(x, y)
                scaled = micro_sum / n_tokens
                if self.loss_scale is not None:  # fp16: the scaled loss's (unscaled later)
                    scaled = scaled * self.loss_scale.scale
            grads = tape.gradient(scaled, self.params)
            # Embedding lookups give IndexedSlices; dense, as PyTorch's nn.Embedding gradient is by
            # default.
            return micro_sum, [tf.convert_to_tensor(g) for g in grads]

        if k == 1:
            loss_sum, grads = micro_step(tf.constant(0))
            return loss_sum / n_tokens, grads

        def body(i: tf.Tensor, loss_sum: tf.Tensor, acc: list[tf.Tensor]) -> tuple[Any, ...]:
            micro_sum, grads = micro_step(i)
            return i + 1, loss_sum + micro_sum, [a + g for a, g in zip(acc, grads)]

        zeros = [tf.zeros_like(p) for p in self.params]
        # A while loop, one iteration at a time: micro-batch i+1's forward never overlaps
        # micro-batch i's backward, so the memory held is one micro-batch's activations plus the
        # accumulators, as in PyTorch. (An unrolled Python loop would let the graph executor run
        # them concurrently.)
        _, loss_sum, grads = tf.while_loop(
            lambda i, *_: i < k,
            body,
            (tf.constant(0), tf.constant(0.0), zeros),
            parallel_iterations=1,
        )
        return loss_sum / n_tokens, grads

    def _mask_gradients(self, grads: list[tf.Tensor]) -> list[tf.Tensor]:
        # pruned weights get no gradient, so their AdamW moments and update stay 0
        masks = self.mask_vars
        return [g * masks[n] if n in masks else g for n, g in zip(self.names, grads)]

    def _unscale_and_clip(
        self, grads: list[tf.Tensor]
    ) -> tuple[list[tf.Tensor], tf.Tensor | None, tf.Tensor]:
        """Unscaled (fp16, before clipping, as scaler.unscale_ in torch) and clipped gradients,
        whether a gradient was non-finite (None without loss scaling), and the global norm before
        clipping (computed once: the clip uses it, the step returns it for the health figures)."""
        found_inf = None
        if self.loss_scale is not None:
            grads, found_inf = self.loss_scale.unscale(grads)
        grads, norm = clip_by_global_norm(grads, self.grad_clip_norm)
        return grads, found_inf, norm

    def _apply(self, grads: list[tf.Tensor], found_inf: tf.Tensor | None) -> None:
        if found_inf is None:
            self.optimizer.apply(grads)
            return

        def apply() -> tf.Tensor:
            self.optimizer.apply(grads)
            return tf.constant(True)

        def skip() -> tf.Tensor:
            self.optimizer.advance_schedule()  # the schedule counts skipped steps, as in torch
            return tf.constant(False)

        # a step with a non-finite gradient is skipped, not applied
        tf.cond(found_inf, skip, apply)
        self.loss_scale.update(found_inf)

    def _train_step_fn(
        self, inputs: tf.Tensor, targets: tf.Tensor, n_tokens: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor]:  # the step's loss and its gradient norm before clipping
        loss, grads = self._accumulate(inputs, targets, n_tokens)
        if self.mask_vars:
            grads = self._mask_gradients(grads)
        self.observed["grad"] = precision.single_dtype([g.dtype.name for g in grads])  # trace time
        if self._step_counter is not None:  # test-only (module docstring)
            grads = self._poison_at_nonfinite_step(grads)
        grads, found_inf, norm = self._unscale_and_clip(grads)
        self._apply(grads, found_inf)
        return loss, norm

    def _poison_at_nonfinite_step(self, grads: list[tf.Tensor]) -> list[tf.Tensor]:
        """Test-only: step k's first gradient made infinite, so the loss scale must skip it."""
        poison = tf.where(tf.equal(self._step_counter, self._nonfinite_step), float("inf"), 0.0)
        grads = [grads[0] + tf.cast(poison, grads[0].dtype)] + list(grads[1:])
        self._step_counter.assign_add(1)
        return grads

    def profile_trace(self, batch: Batch, out_dir: Path) -> dict[str, Any]:
        return trace_steps(self, batch, out_dir)

    def _feed(self, batch: Batch) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        with tf.device(self.device):
            return (
                tf.constant(batch.inputs, tf.int64),
                tf.constant(batch.targets, tf.int64),
                tf.constant(batch.n_target_tokens, tf.float32),  # counted on the host: no sync
            )

    def train_step(self, batch: Batch) -> tf.Tensor:
        with tf.device(self.device):
            loss, norm = self._train_step(*self._feed(batch))
        self._grad_norms.append(norm)
        if self.steps == 0:
            self._check_first_step()
        self.steps += 1
        return loss

    def _check_first_step(self) -> None:
        """The dtypes the traced step used (recorded at trace time) against the label."""
        self.observed.update(self.model.observed)
        state = self.optimizer.m + self.optimizer.v
        self.observed.update(
            param=precision.single_dtype([_dtype(p).name for p in self.params]),
            optimizer_state=precision.single_dtype([_dtype(t).name for t in state]),
            tf32=self._tf32_on_gpu(),
        )
        precision.check_observed(self.level.name, self.observed)

    def _tf32_on_gpu(self) -> bool:
        """Whether this trainer's matmuls run in TF32 (TensorFlow applies it on GPUs only)."""
        enabled = bool(tf.config.experimental.tensor_float_32_execution_enabled())
        return enabled and self.device.startswith("/GPU")

    def gradients(self, batch: Batch) -> tuple[float, dict[str, np.ndarray]]:
        with tf.device(self.device):
            loss, grads = self._gradients(*self._feed(batch))
        inv_scale = 1.0 / float(self.loss_scale.scale) if self.loss_scale is not None else 1.0
        return float(loss), {
            n: np.asarray(tf.cast(g, tf.float32).numpy()) * np.float32(inv_scale)
            for n, g in zip(self.names, grads)
        }

    def step_timer(self) -> StepTimer | None:
        """GPU: no per-step sync, segment means (TensorFlow has no device event timer)."""
        return WindowTimer() if self.device.startswith("/GPU") else None

    def weights(self) -> dict[str, np.ndarray]:
        return {
            n: np.asarray(tf.cast(p, tf.float32).numpy()) for n, p in zip(self.names, self.params)
        }

    def sync(self) -> None:
        if self.device.startswith("/GPU"):
            tf.test.experimental.sync_devices()  # waits for every queued op on every device

    def losses_to_floats(self, losses: list[Any]) -> list[float]:
        return [float(loss) for loss in losses]

    def grad_norms_to_floats(self) -> list[float] | None:  # one transfer
        return [float(v) for v in tf.stack(self._grad_norms).numpy()] if self._grad_norms else []

    def eval_loss(self, batches: list[Batch]) -> float:
        total, tokens = 0.0, 0
        with tf.device(self.device):
            for batch in batches:
                inputs = tf.constant(batch.inputs, tf.int64)
                targets = tf.constant(batch.targets, tf.int64)
                total += float(self._eval_sum(inputs, targets))
                tokens += batch.n_target_tokens
        return total / tokens

    def reset_peak_memory(self) -> None:
        if self.device.startswith("/GPU"):
            tf.config.experimental.reset_memory_stats(self.device.removeprefix("/"))

    def memory(self) -> dict[str, Any]:
        if not self.device.startswith("/GPU"):
            return {
                "tf_gpu_peak_bytes": None,
                "framework_memory_reason": (
                    "TensorFlow keeps no allocator statistics for the CPU; see host_peak_rss_bytes"
                ),
            }
        info = tf.config.experimental.get_memory_info(self.device.removeprefix("/"))
        # peak bytes in use by TensorFlow's BFC allocator on this GPU since the reset at the first
        # window
        return {"tf_gpu_peak_bytes": int(info["peak"]), "framework_memory_reason": None}

    def _applied(self) -> str:
        """What this trainer applied, in TensorFlow's terms."""
        param_dtype = _dtype(self.params[0])
        parts = [f"variables {param_dtype.name}"]
        if self.model.compute_dtype != param_dtype:
            policy = getattr(self.model, "policy", None)  # the LSTM's Keras dtype policy
            parts.append(
                f"{self.model.compute_dtype.name} matmuls (variables cast at use"
                + (f"; Keras policy {policy})" if policy else ")")
            )
        if self.loss_scale is not None:
            parts.append("DynamicLossScale (GradScaler's algorithm)")
        if self._tf32_on_gpu():
            parts.append("TF32 matmuls")
        return " + ".join(parts)

    def info(self) -> dict[str, Any]:
        state = self.optimizer.m + self.optimizer.v
        scale = self.loss_scale
        return {
            "device": self.device,
            "optimizer_impl": "hlbench.backends.tf.optim.AdamW (torch formula)",
            "param_dtype": _dtype(self.params[0]).name,  # Keras 3 variables: a string
            "precision": self._applied(),
            "dtypes": dict(self.observed),  # observed at trace time and checked against the label
            "loss_scale_final": float(scale.scale) if scale is not None else None,
            "overflow_skipped_steps": int(scale.overflow_steps) if scale is not None else None,
            # what bf16-pure saves over the mixed levels, by construction (the allocator peak is in
            # `memory`)
            "param_bytes": sum(int(np.prod(p.shape)) * _dtype(p).size for p in self.params),
            "optimizer_state_bytes": sum(int(np.prod(t.shape)) * _dtype(t).size for t in state),
            "tf32_enabled": tf.config.experimental.tensor_float_32_execution_enabled(),
            "jit_compile": self.jit_compile,
            "tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "sparse_execution": "dense kernels with masks" if self.mask_vars else None,
        }


def _dtype(variable: Any) -> tf.DType:
    """A variable's dtype as a tf.DType (Keras 3 variables give a string)."""
    return tf.as_dtype(variable.dtype)
