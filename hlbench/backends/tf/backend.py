"""The TensorFlow backend: the same workloads, weights, batches, optimizer and loss as the PyTorch one.

Accumulation semantics (DESIGN §3), as in torch_backend: the step's loss is the sum of per-token losses
over all k micro-batches divided by the step-wide number of target tokens; each micro-batch's summed
loss is divided by that count before its gradient is taken, and the gradients are summed.

The optimizer step is one `tf.function` (a graph); the `compile` axis adds XLA (`jit_compile=True`).
Tracing and XLA compilation happen on the first call, which the measurement loop times as warmup
(startup), never as a measured step.

Precision (hlbench.techniques.precision, DESIGN §3), the same meaning as in torch_backend:
- fp32: TF32 off (TensorFlow turns it on by default on Ampere+); tf32: on, GPU compute capability ≥ 8.0;
- bf16 / fp16: float32 variables, matmuls in the compute dtype (casts where variables are used,
  tf_models.py; the LSTM through Keras's mixed policy); fp16 adds dynamic loss scaling with
  GradScaler's algorithm (tf_optim.DynamicLossScale): gradients unscaled before clipping, a step with
  a non-finite gradient skipped (tf.cond), the scale halved;
- bf16-pure: variables and AdamW moments in bfloat16 (their gradients follow);
- fp8: not available in TensorFlow (the registry skips it).
Dtypes are static in a graph: they are recorded at trace time from the Python side and checked
after the first step (hlbench.techniques.precision.check_observed); a contradiction raises PrecisionViolation.

Data parallel (a cell with `launch`: MirroredStrategy or MultiWorkerMirroredStrategy): the same step
on mirrored variables, each replica on its shard of the global batch, gradients all-reduced (SUM);
semantics, what is skipped and why: hlbench.backends.tf.distribute. TFBackend.prepare creates the
strategy before the runtime initialises.

Test-only hooks (never set them in a real run; see hlbench.techniques.precision):
- HLBENCH_TEST_PRECISION_MISMATCH=1: the level's dtypes are not applied (bf16 compute for fp32);
- HLBENCH_TEST_NONFINITE_STEP=k: optimizer step k's gradients are made non-finite (the op exists in
  the graph only when the variable is set).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

# Quieter C++ logging in worker logs; must precede the import. Users can still override it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

import tensorflow as tf  # noqa: E402

from hlbench.techniques import precision  # noqa: E402
from hlbench.backends import TF  # noqa: E402
from hlbench.backends.base import Backend, Trainer
from hlbench.errors import SkipCell  # noqa: E402
from hlbench.backends.tf.models import build_model  # noqa: E402
from hlbench.backends.tf.optim import AdamW, DynamicLossScale, clip_by_global_norm  # noqa: E402
from hlbench.cell import Cell  # noqa: E402
from hlbench.data import IGNORE_INDEX, Batch  # noqa: E402
from hlbench.profiling.phases import PhaseTimer  # noqa: E402
from hlbench.techniques import pruning as P  # noqa: E402
from hlbench.techniques.driver import pruning_for  # noqa: E402
from hlbench.workloads import model_spec  # noqa: E402


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


DTYPES = {precision.FLOAT32: tf.float32, precision.BFLOAT16: tf.bfloat16, precision.FLOAT16: tf.float16}


def require_device_for(level: precision.Level, device: str) -> None:
    """SkipCell, with the reason, when `device` cannot run `level` (never a silent fallback)."""
    if level.min_cuda_capability is None:
        return
    capability, here = None, "cpu"
    if device.startswith("/GPU"):
        gpu = tf.config.list_physical_devices("GPU")[int(device.rpartition(":")[2])]
        details = tf.config.experimental.get_device_details(gpu)
        capability = details.get("compute_capability")
        here = f"{device} ({details.get('device_name')}, compute capability {'.'.join(map(str, capability or ()))})"
    if capability is None or tuple(capability) < level.min_cuda_capability:
        need = ".".join(map(str, level.min_cuda_capability))
        raise SkipCell(f"{level.name} needs an NVIDIA Ampere or newer GPU (compute capability ≥ {need}); "
                       f"this cell's device is {here}")


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
        self.level = precision.level(cell.axes["precision"])
        # Test-only: run other dtypes than the label says, so the check must catch it (module docstring).
        param_name, compute_name = precision.applied_dtypes(self.level)
        param_dtype, compute_dtype = DTYPES[param_name], DTYPES[compute_name]
        self.observed: dict[str, Any] = {}
        self.steps = 0  # train_step calls so far
        self._nonfinite_step = precision.nonfinite_step()  # test-only
        with self._variable_scope():
            self.model = build_model(spec, weights, param_dtype, compute_dtype)
            self.params = [self.model.variables[n] for n in self.names]
            self.optimizer = AdamW(self.params, [spec.decayed(n) for n in self.names], cell.optimizer)
            self.loss_scale = DynamicLossScale(
                precision.LOSS_SCALE_INIT, precision.LOSS_SCALE_GROWTH_FACTOR, precision.LOSS_SCALE_BACKOFF_FACTOR,
                precision.LOSS_SCALE_GROWTH_INTERVAL) if self.level.loss_scaling else None
            self._step_counter = tf.Variable(0, trainable=False, dtype=tf.int64) if self._nonfinite_step is not None else None
            # One mask per parameter a pruning event may touch, made before tracing (all ones until
            # apply_masks), so the compiled step multiplies those gradients by them (no retracing).
            pruning = pruning_for(cell)
            self.mask_vars = {n: tf.Variable(tf.ones_like(self.params[self.names.index(n)]), trainable=False,
                                             name=f"mask/{n}") for n in P.maskable(spec, pruning)}
        self._make_functions(cell)

    def _variable_scope(self) -> Any:
        """Where the model's and optimizer's variables are created: this trainer's one device."""
        return tf.device(self.device)

    def _make_functions(self, cell: Cell) -> None:
        w = cell.workload
        batch_spec = tf.TensorSpec((w["global_batch"], w["seq_len"]), tf.int64)
        scalar = tf.TensorSpec((), tf.float32)
        # One trace per function for the whole cell: fixed shapes, no retracing.
        self._train_step = tf.function(self._train_step_fn, input_signature=[batch_spec, batch_spec, scalar],
                                       jit_compile=self.jit_compile)
        self._gradients = tf.function(self._accumulate, input_signature=[batch_spec, batch_spec, scalar],
                                      jit_compile=self.jit_compile)
        self._eval_sum = tf.function(lambda x, y: _token_loss_sum(self.model(x), y), jit_compile=self.jit_compile)

    def _micro_loss(self, x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        """One micro-batch's forward: its summed token loss (float32)."""
        logits = self.model(x)  # (b, T, V)
        self.observed.setdefault("matmul_output", logits.dtype.name)  # trace time: the head's matmul
        return _token_loss_sum(logits, y)

    def _forward_loss(self, inputs: tf.Tensor, targets: tf.Tensor, n_tokens: tf.Tensor) -> tf.Tensor:
        """The step's loss over the k micro-batches without gradients (the profile pass's forward phase)."""
        micro = inputs.shape[0] // self.accumulation
        total = tf.add_n([self._micro_loss(inputs[i * micro:(i + 1) * micro], targets[i * micro:(i + 1) * micro])
                          for i in range(self.accumulation)])
        return total / n_tokens

    def _accumulate(self, inputs: tf.Tensor, targets: tf.Tensor, n_tokens: tf.Tensor) -> tuple[tf.Tensor, list[tf.Tensor]]:
        """Forward and backward over the k micro-batches in order; returns (step loss, summed gradients)."""
        k = self.accumulation
        micro = inputs.shape[0] // k

        def micro_step(i: tf.Tensor) -> tuple[tf.Tensor, list[tf.Tensor]]:
            x, y = inputs[i * micro:(i + 1) * micro], targets[i * micro:(i + 1) * micro]
            with tf.GradientTape() as tape:
                micro_sum = self._micro_loss(x, y)
                scaled = micro_sum / n_tokens
                if self.loss_scale is not None:  # fp16: gradients of the scaled loss (unscaled later)
                    scaled = scaled * self.loss_scale.scale
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

    def _mask_gradients(self, grads: list[tf.Tensor]) -> list[tf.Tensor]:
        # pruned weights get no gradient, so their AdamW moments and update stay 0
        return [g * self.mask_vars[n] if n in self.mask_vars else g for n, g in zip(self.names, grads)]

    def _unscale_and_clip(self, grads: list[tf.Tensor]) -> tuple[list[tf.Tensor], tf.Tensor | None]:
        """Unscaled (fp16, before clipping, as scaler.unscale_ in torch) and clipped gradients, and
        whether a gradient was non-finite (None without loss scaling)."""
        found_inf = None
        if self.loss_scale is not None:
            grads, found_inf = self.loss_scale.unscale(grads)
        if self.grad_clip_norm is not None:
            grads = clip_by_global_norm(grads, self.grad_clip_norm)
        return grads, found_inf

    def _apply(self, grads: list[tf.Tensor], found_inf: tf.Tensor | None) -> None:
        if found_inf is None:
            self.optimizer.apply(grads)
            return

        def apply() -> tf.Tensor:
            self.optimizer.apply(grads)
            return tf.constant(True)

        tf.cond(found_inf, lambda: tf.constant(False), apply)  # a non-finite step is skipped, not applied
        self.loss_scale.update(found_inf)

    def _train_step_fn(self, inputs: tf.Tensor, targets: tf.Tensor, n_tokens: tf.Tensor) -> tf.Tensor:
        loss, grads = self._accumulate(inputs, targets, n_tokens)
        if self.mask_vars:
            grads = self._mask_gradients(grads)
        self.observed["grad"] = precision.single_dtype([g.dtype.name for g in grads])  # trace time
        if self._step_counter is not None:  # test-only (module docstring): step k's gradients non-finite
            poison = tf.where(tf.equal(self._step_counter, self._nonfinite_step), float("inf"), 0.0)
            grads = [grads[0] + tf.cast(poison, grads[0].dtype)] + list(grads[1:])
            self._step_counter.assign_add(1)
        self._apply(*self._unscale_and_clip(grads))
        return loss

    def _step_prefix(self, inputs: tf.Tensor, targets: tf.Tensor, n_tokens: tf.Tensor, *, mask: bool,
                     clip: bool) -> list[tf.Tensor]:
        """The fused step's first part, without side effects: gradients, then masked, then unscaled and
        clipped — the same methods _train_step_fn calls, in its order."""
        _, grads = self._accumulate(inputs, targets, n_tokens)
        if mask and self.mask_vars:
            grads = self._mask_gradients(grads)
        if clip:
            grads, _ = self._unscale_and_clip(grads)
        return grads

    def _phase_functions(self) -> dict[str, Any]:
        """Cumulative prefixes of the step, each its own function, traced on first use (the profile
        pass's untimed first call). One graph per phase boundary, not the fused graph: a phase is the
        difference between consecutive prefixes (forward = the forward-only loss; backward = gradients
        − forward; mask; unscale_clip; optimizer = the real fused train_step − everything before it),
        so the phases add up to the fused step timed here. profile_pass times the fused step again, on
        its own, and the tests check the sum against that."""
        if not hasattr(self, "_phase_fns"):
            jit = self.jit_compile

            def prefix(mask: bool, clip: bool) -> Any:
                return tf.function(lambda x, y, n: self._step_prefix(x, y, n, mask=mask, clip=clip), jit_compile=jit)

            self._phase_fns = {"forward": tf.function(self._forward_loss, jit_compile=jit),
                               "backward": prefix(False, False), "mask": prefix(True, False),
                               "unscale_clip": prefix(True, True)}
        return self._phase_fns

    def profile_phases(self, batch: Batch) -> dict[str, float]:
        fns, timer = self._phase_functions(), PhaseTimer(self.sync)
        with tf.device(self.device):
            with timer.phase("host_to_device"):
                feed = self._feed(batch)
            cumulative_s = {}
            for name in ("forward", "backward", "mask", "unscale_clip"):
                if name == "mask" and not self.mask_vars:
                    continue
                # the least of a few runs: a phase is a difference of two prefixes, and CPU timing
                # noise in either would otherwise swamp a short phase (no side effects: repeatable)
                runs_s = []
                for _ in range(PREFIX_RUNS):
                    with timer.phase(name):
                        _block(fns[name](*feed))
                    runs_s.append(timer.seconds.pop(name))
                cumulative_s[name] = min(runs_s)
            with timer.phase("optimizer"):  # the real step, once: it trains
                _block(self._train_step(*feed))
            cumulative_s["optimizer"] = timer.seconds.pop("optimizer")
        previous = 0.0
        for name, seconds in cumulative_s.items():  # prefix times → phase times
            timer.seconds[name] = max(seconds - previous, 0.0)
            previous = seconds
        self.steps += 1
        return timer.seconds

    def profile_trace(self, batch: Batch, out_dir: Path) -> dict[str, Any]:
        from hlbench.backends.tf.trace import trace_steps

        return trace_steps(self, batch, out_dir)

    def _feed(self, batch: Batch) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        with tf.device(self.device):
            return (tf.constant(batch.inputs, tf.int64), tf.constant(batch.targets, tf.int64),
                    tf.constant(batch.n_target_tokens, tf.float32))  # counted on the host: no sync

    def train_step(self, batch: Batch) -> tf.Tensor:
        with tf.device(self.device):
            loss = self._train_step(*self._feed(batch))
        if self.steps == 0:
            self._check_first_step()
        self.steps += 1
        return loss

    def _check_first_step(self) -> None:
        """The dtypes the traced step used (recorded at trace time) against the label."""
        self.observed.update(self.model.observed)
        self.observed.update(
            param=precision.single_dtype([_dtype(p).name for p in self.params]),
            optimizer_state=precision.single_dtype([_dtype(t).name for t in self.optimizer.m + self.optimizer.v]),
            tf32=bool(tf.config.experimental.tensor_float_32_execution_enabled()) and self.device.startswith("/GPU"),
        )
        precision.check_observed(self.level.name, self.observed)

    def gradients(self, batch: Batch) -> tuple[float, dict[str, np.ndarray]]:
        with tf.device(self.device):
            loss, grads = self._gradients(*self._feed(batch))
        inv_scale = 1.0 / float(self.loss_scale.scale) if self.loss_scale is not None else 1.0
        return float(loss), {n: np.asarray(tf.cast(g, tf.float32).numpy()) * np.float32(inv_scale)
                             for n, g in zip(self.names, grads)}

    def apply_masks(self, masks: dict[str, np.ndarray]) -> None:
        with tf.device(self.device):
            for name, mask in masks.items():
                if name not in self.mask_vars:
                    raise ValueError(f"{name} is not maskable under this cell's pruning settings")
                i = self.names.index(name)
                keep = tf.constant(mask, dtype=_dtype(self.params[i]))
                for var in (self.params[i], self.optimizer.m[i], self.optimizer.v[i]):
                    var.assign(var * keep)
                self.mask_vars[name].assign(keep)

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

    def _applied(self) -> str:
        """What this trainer applied, in TensorFlow's terms."""
        parts = [f"variables {_dtype(self.params[0]).name}"]
        if self.model.compute_dtype != _dtype(self.params[0]):
            policy = getattr(self.model, "policy", None)  # the LSTM's Keras dtype policy
            parts.append(f"{self.model.compute_dtype.name} matmuls (variables cast at use"
                         + (f"; Keras policy {policy})" if policy else ")"))
        if self.loss_scale is not None:
            parts.append("DynamicLossScale (GradScaler's algorithm)")
        if tf.config.experimental.tensor_float_32_execution_enabled() and self.device.startswith("/GPU"):
            parts.append("TF32 matmuls")
        return " + ".join(parts)

    def info(self) -> dict[str, Any]:
        state = self.optimizer.m + self.optimizer.v
        return {
            "device": self.device,
            "optimizer_impl": "hlbench.tf_optim.AdamW (torch formula)",
            "param_dtype": self.params[0].dtype.name,
            "precision": self._applied(),
            "dtypes": dict(self.observed),  # observed at trace time and checked against the label
            "loss_scale_final": float(self.loss_scale.scale) if self.loss_scale is not None else None,
            "overflow_skipped_steps": int(self.loss_scale.overflow_steps) if self.loss_scale is not None else None,
            # what bf16-pure saves over the mixed levels, by construction (the allocator peak is in `memory`)
            "param_bytes": sum(int(np.prod(p.shape)) * _dtype(p).size for p in self.params),
            "optimizer_state_bytes": sum(int(np.prod(t.shape)) * _dtype(t).size for t in state),
            "tf32_enabled": tf.config.experimental.tensor_float_32_execution_enabled(),
            "jit_compile": self.jit_compile,
            "tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "sparse_execution": "dense kernels with masks" if self.mask_vars else None,
        }


class TFBackend(Backend):
    name = "tf"

    def __init__(self) -> None:
        configure_runtime()
        self._distribution: Any = None  # tf_distribute.Distribution of a data-parallel cell (prepare)

    def prepare(self, cell: Cell) -> None:
        """A data-parallel cell: create its tf.distribute strategy now, before any other op (logical
        CPU devices and MultiWorkerMirroredStrategy must precede the runtime's initialisation).
        Cells without `launch`, or with one this backend skips (build says why), need nothing."""
        if not cell.launch or self._distribution is not None:
            return
        from hlbench.backends.tf import distribute as tf_distribute  # imports this module: not at the top

        if tf_distribute.unsupported_reason(cell) is None:
            self._distribution = tf_distribute.make_distribution(cell)

    def shutdown(self) -> None:
        if self._distribution is not None:
            from hlbench.backends.tf import distribute as tf_distribute

            tf_distribute.shutdown_barrier(self._distribution)

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
        reason = TF.unsupported_reason_for(cell)
        if reason:
            raise SkipCell(reason)
        if cell.launch:
            return self._build_distributed(cell, weights)
        device = resolve_device(cell.device)
        level = precision.level(cell.axes["precision"])
        require_device_for(level, device)
        tf.config.experimental.enable_tensor_float_32_execution(level.tf32)  # off at every other level
        return TFTrainer(cell, weights, device)

    def _build_distributed(self, cell: Cell, weights: dict[str, np.ndarray]) -> TFTrainer:
        """A trainer on mirrored variables (hlbench.backends.tf.distribute); SkipCell with the reason
        for what does not run under a strategy."""
        from hlbench.backends.tf import distribute as tf_distribute

        reason = tf_distribute.unsupported_reason(cell)
        if reason:
            raise SkipCell(reason)
        self.prepare(cell)  # the worker has called it already; in-process callers may not have
        dist = self._distribution
        if (dist.kind, dist.world_size) != (cell.launch["strategy"], int(cell.launch["world_size"])):
            raise RuntimeError(f"this process's strategy is {dist.kind} × {dist.world_size}; a process runs one "
                               f"data-parallel shape (cell.launch {cell.launch})")
        if dist.skip_reason:
            raise SkipCell(dist.skip_reason)
        level = precision.level(cell.axes["precision"])
        require_device_for(level, dist.local_device)
        tf.config.experimental.enable_tensor_float_32_execution(level.tf32)
        return tf_distribute.MirroredTFTrainer(cell, weights, dist)

    def is_oom(self, exc: BaseException) -> bool:
        return isinstance(exc, (tf.errors.ResourceExhaustedError, MemoryError))


PREFIX_RUNS = 3  # runs per side-effect-free step prefix in the profile pass (TFTrainer.profile_phases)


def _block(tensors: Any) -> None:
    """Wait until `tensors` are computed: reading back the smallest of them forces completion of the
    function that produced them all (a function's outputs are delivered together); the PhaseTimer's
    sync then waits for the GPU too."""
    flat = [t for t in tf.nest.flatten(tensors) if hasattr(t, "numpy")]
    if flat:
        min(flat, key=lambda t: int(np.prod(t.shape))).numpy()


def _dtype(variable: Any) -> tf.DType:
    """A variable's dtype as a tf.DType (Keras 3 variables give a string)."""
    return tf.as_dtype(variable.dtype)


def _keras_version() -> str | None:
    try:
        import keras
    except ImportError:
        return None
    return keras.__version__
