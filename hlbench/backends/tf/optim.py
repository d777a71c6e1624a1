"""AdamW and global-norm clipping for the TensorFlow backend, with PyTorch's exact arithmetic.

Why not keras.optimizers.AdamW / tf.clip_by_global_norm: both differ from what the PyTorch backend
runs, so the frameworks would not train the same way.
- Keras's Adam adds ε to sqrt(v) *before* the bias correction of v (its update is
  lr·sqrt(1-β2ᵗ)/(1-β1ᵗ) · m / (sqrt(v) + ε)), PyTorch's after it
  (lr/(1-β1ᵗ) · m / (sqrt(v)/sqrt(1-β2ᵗ) + ε)): the same only when ε is negligible, which is not
  true for small gradients early in training.
- tf.clip_by_global_norm scales by clip/max(norm, clip); torch.nn.utils.clip_grad_norm_ by
  min(1, clip/(norm + 1e-6)).
Both are a few lines, written here once.

Reduced-precision state (bf16-pure): each update is computed in float32 from the stored values and
rounded once into the variable's dtype, as PyTorch's fused AdamW kernels do (on the CPU, torch 2.13:
equal but for rare one-ulp differences where torch's kernel fuses a multiply-add; tested); for
float32 variables every cast is a no-op and the arithmetic is unchanged.

Dynamic loss scaling (fp16): DynamicLossScale, torch.amp.GradScaler's algorithm. Why not
keras.optimizers.LossScaleOptimizer: it wraps a Keras optimizer (this AdamW is not one, see above),
and its defaults differ from GradScaler's (initial scale 2**15, not 2**16).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import tensorflow as tf

from hlbench.cell import Optimizer
from hlbench.techniques import precision, schedule

TORCH_CLIP_EPS = 1e-6  # torch.nn.utils.clip_grad_norm_ adds it to the norm


def global_norm(grads: Sequence[tf.Tensor]) -> tf.Tensor:
    """The 2-norm of all gradients together (float32)."""
    return tf.sqrt(tf.add_n([tf.reduce_sum(tf.square(tf.cast(g, tf.float32))) for g in grads]))


def clip_by_global_norm(
    grads: Sequence[tf.Tensor], max_norm: float | None
) -> tuple[list[tf.Tensor], tf.Tensor]:
    """torch.nn.utils.clip_grad_norm_: scale every gradient by min(1, max_norm / (norm + 1e-6))
    (max_norm None: unchanged); also returns the global norm before clipping, as torch does."""
    norm = global_norm(grads)
    if max_norm is None:
        return list(grads), norm
    coef = tf.minimum(1.0, max_norm / (norm + TORCH_CLIP_EPS))
    return [g * tf.cast(coef, g.dtype) for g in grads], norm


class AdamW:
    """torch.optim.AdamW (amsgrad off, maximize off): decoupled decay, then the bias-corrected
    Adam step.

    `decayed[i]` says whether variables[i] gets weight decay (the neutral spec decides, as in
    PyTorch).
    Moments are created here, eagerly, so the compiled step never creates variables.
    """

    def __init__(self, variables: Sequence[Any], decayed: Sequence[bool], opt: Optimizer) -> None:
        self.variables = list(variables)
        self.decayed = list(decayed)
        self.lr = float(opt.lr)
        self.beta1, self.beta2 = (float(b) for b in opt.betas)
        self.eps = float(opt.eps)
        self.weight_decay = float(opt.weight_decay)
        self.step = tf.Variable(0.0, trainable=False, dtype=tf.float32, name="adamw/step")
        # The schedule's clock counts every step, a skipped fp16 step too (hlbench.techniques.
        # schedule); `step` counts applied updates only (AdamW's bias correction, as in torch).
        self.schedule = lr_schedule(opt)
        self.iterations = None
        if self.schedule is not None:
            self.iterations = tf.Variable(0.0, trainable=False, name="adamw/iterations")
        self.m = [
            tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False, name="adamw/m")
            for v in self.variables
        ]
        self.v = [
            tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False, name="adamw/v")
            for v in self.variables
        ]

    def apply(self, grads: Sequence[tf.Tensor]) -> None:
        step = self.step.assign_add(1.0)
        lr = self.learning_rate(self.advance_schedule())
        for var, grad, m, v, decayed in zip(self.variables, grads, self.m, self.v, self.decayed):
            self.update_variable(var, grad, m, v, step, decayed, lr)

    def advance_schedule(self) -> tf.Tensor | None:
        """One step on the schedule's clock (also for a step that is skipped); its new value."""
        return None if self.iterations is None else self.iterations.assign_add(1.0)

    def learning_rate(self, iterations: Any) -> tf.Tensor | float:
        """The rate of schedule step `iterations` (≥ 1), or the constant lr."""
        return self.lr if self.schedule is None else self.schedule(iterations)

    def apply_distributed(self, strategy: tf.distribute.Strategy, grads: Sequence[Any]) -> None:
        """`apply` on mirrored variables, from cross-replica context (a merge_call): each variable's
        copy on each device is updated with that device's (already all-reduced, identical) gradient,
        as Keras's optimizers do under tf.distribute. The step, moments and variables are
        mirrored."""
        ext = strategy.extended
        ext.update(self.step, lambda step: step.assign_add(1.0), group=False)
        if self.iterations is not None:  # no loss scale under a strategy: every step applies
            ext.update(self.iterations, lambda it: it.assign_add(1.0), group=False)
        for var, grad, m, v, decayed in zip(self.variables, grads, self.m, self.v, self.decayed):
            # m, v, step and iterations are mirrored variables: inside the update of `var` on a
            # device, they read and assign that device's copy (tf.distribute's update context)
            ext.update(
                _tf_variable(var),
                lambda *args: self.update_variable(*args, self.learning_rate(self.iterations)),
                args=(grad, m, v, self.step, decayed),
                group=False,
            )

    def update_variable(
        self, var: Any, grad: tf.Tensor, m: Any, v: Any, step: Any, decayed: bool, lr: Any
    ) -> None:
        """One parameter's AdamW update at optimizer step `step` (already incremented, ≥ 1) with
        learning rate `lr`."""
        step = tf.cast(step, tf.float32)
        bias_correction1 = 1.0 - tf.pow(self.beta1, step)
        bias_correction2_sqrt = tf.sqrt(1.0 - tf.pow(self.beta2, step))
        step_size = lr / bias_correction1
        f32 = tf.float32
        # float32 arithmetic, one rounding per stored tensor (module docstring); no-op casts in fp32
        p, g, m_new, v_new = (tf.cast(t, f32) for t in (var, grad, m, v))
        if decayed and self.weight_decay:
            p = p * (1.0 - lr * self.weight_decay)
        m_new = m_new + (g - m_new) * (1.0 - self.beta1)  # torch: m.lerp_(grad, 1 - β1)
        v_new = v_new * self.beta2 + g * g * (1.0 - self.beta2)
        denom = tf.sqrt(v_new) / bias_correction2_sqrt + self.eps
        m.assign(tf.cast(m_new, m.dtype))
        v.assign(tf.cast(v_new, v.dtype))
        var.assign(tf.cast(p - step_size * m_new / denom, var.dtype))


def lr_schedule(opt: Optimizer) -> Any:
    """hlbench.techniques.schedule's cosine schedule as Keras's CosineDecay (the same formula,
    evaluated in float32 inside the compiled step); None for a constant rate."""
    if opt.lr_schedule == schedule.CONSTANT:
        return None
    import keras  # only where a schedule is used: GPT cells otherwise never import Keras

    warmup = opt.lr_warmup_steps
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0,
        decay_steps=opt.lr_decay_steps - warmup,
        alpha=opt.lr_min_ratio,
        warmup_target=opt.lr,
        warmup_steps=warmup,
    )


def _tf_variable(var: Any) -> Any:
    """The tf.Variable behind a Keras 3 variable (the LSTM's), which is what tf.distribute mirrors
    and updates; a tf.Variable itself otherwise. (tf.Variable.value is a method, Keras's `value` a
    variable.)"""
    inner = getattr(var, "value", None)
    return inner if isinstance(inner, tf.Variable) else var


class DynamicLossScale:
    """torch.amp.GradScaler's dynamic loss scaling, step for step.

    The loss is multiplied by `scale` before the gradients are taken; `unscale` multiplies them by
    1/scale and reports whether any is non-finite; the caller skips the optimizer step then;
    `update` halves the scale after an overflow (and restarts the count), or doubles it after
    `growth_interval` consecutive finite steps (if the doubled scale is finite), as torch's
    _amp_update_scale_ does.
    """

    def __init__(
        self, init_scale: float, growth_factor: float, backoff_factor: float, growth_interval: int
    ) -> None:
        self.scale = tf.Variable(init_scale, trainable=False, dtype=tf.float32, name="loss_scale")
        self.growth_tracker = tf.Variable(
            0, trainable=False, dtype=tf.int32, name="loss_scale/growth_tracker"
        )
        self.overflow_steps = tf.Variable(
            0, trainable=False, dtype=tf.int32, name="loss_scale/overflow_steps"
        )
        self.growth_factor, self.backoff_factor, self.growth_interval = (
            growth_factor,
            backoff_factor,
            growth_interval,
        )

    def unscale(self, grads: Sequence[tf.Tensor]) -> tuple[list[tf.Tensor], tf.Tensor]:
        """(gradients × 1/scale, whether any gradient is non-finite)."""
        inv_scale = tf.cast(
            1.0 / tf.cast(self.scale, tf.float64), tf.float32
        )  # GradScaler: double reciprocal
        grads = [g * tf.cast(inv_scale, g.dtype) for g in grads]
        finite = tf.reduce_all(tf.stack([tf.reduce_all(tf.math.is_finite(g)) for g in grads]))
        return grads, tf.logical_not(finite)

    def update(self, found_inf: tf.Tensor) -> None:
        successful = self.growth_tracker + 1
        grow = tf.logical_and(tf.logical_not(found_inf), tf.equal(successful, self.growth_interval))
        grown = self.scale * self.growth_factor
        new_scale = tf.where(
            found_inf,
            self.scale * self.backoff_factor,
            tf.where(tf.logical_and(grow, tf.math.is_finite(grown)), grown, self.scale),
        )
        self.growth_tracker.assign(tf.where(tf.logical_or(found_inf, grow), 0, successful))
        self.scale.assign(new_scale)
        self.overflow_steps.assign_add(tf.cast(found_inf, tf.int32))


def gradscaler_loss_scale() -> DynamicLossScale:
    """fp16's dynamic loss scale with GradScaler's constants (hlbench.techniques.precision)."""
    p = precision
    factors = (p.LOSS_SCALE_GROWTH_FACTOR, p.LOSS_SCALE_BACKOFF_FACTOR)
    return DynamicLossScale(p.LOSS_SCALE_INIT, *factors, p.LOSS_SCALE_GROWTH_INTERVAL)
