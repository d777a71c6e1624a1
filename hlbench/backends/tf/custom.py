"""Building a custom Keras model (`model: custom` with a `tf` factory) for a cell.

The factory is called once, after `keras.utils.set_random_seed(cell seed)`, under the Keras dtype
policy of the cell's precision level (float32; mixed_bfloat16 / mixed_float16 for bf16 / fp16;
bfloat16 for bf16-pure: Keras's own autocast, as the LSTM workload uses), on the trainer's device.
It must return a `keras.Model` mapping int ids (B, T) to logits (B, T, V); one call on a
(1, T) batch builds its variables and checks that. Parameters are the trainable variables under
their Keras paths (a Dense kernel is already (in, out), the neutral layout); pruning acts on the
2-D `kernel`s. FLOPs per token are counted on the TensorFlow graph of a traced forward and
backward of one sequence (2 per multiply-add of its MatMul, BatchMatMul and Einsum ops, as
FlopCounterMode counts); where that fails, the record says so and MFU is null.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import tensorflow as tf

from hlbench.backends.tf.losses import token_loss_sum
from hlbench.backends.tf.models import TFModel, keras_policy
from hlbench.cell import Cell
from hlbench.errors import SkipCell
from hlbench.techniques import precision
from hlbench.workloads import custom
from hlbench.workloads.custom import Built, CustomModelError, CustomSpec


class KerasModel(TFModel):
    """A user's keras.Model as the TF trainer drives it: `variables` by name, ids -> logits."""

    def __init__(self, model: Any, variables: dict[str, Any], policy: str) -> None:
        self.keras_model = model
        self.variables = variables
        self.policy = policy
        self.compute_dtype = tf.as_dtype(model.dtype_policy.compute_dtype)
        self.observed = {}

    def __call__(self, idx: tf.Tensor) -> tf.Tensor:
        return self.keras_model(idx)


def build_spec(cell: Cell, spec: CustomSpec, device: str) -> CustomSpec:
    """The spec of the Keras model the cell trains, built (the model rides along in `built`)."""
    if spec.model == "hf":
        raise SkipCell("hf models are built in PyTorch only (backends: [torch])")
    ref = spec.factory_for("tf")
    if ref is None:
        raise SkipCell("this custom workload names no tf factory (factory: {tf: ...})")
    if cell.launch:
        raise SkipCell(
            "a custom Keras model under tf.distribute is not wired up (its variables would have "
            "to be created in the strategy's scope); use the torch backend or one device"
        )
    import keras

    seq_len = cell.workload.seq_len
    param_name, compute_name = precision.applied_dtypes(precision.level(cell.axes["precision"]))
    policy = keras_policy(tf.as_dtype(param_name), tf.as_dtype(compute_name))
    keras.utils.set_random_seed(cell.seed)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        with tf.device(device):
            model = custom.call_factory(
                ref, spec.kwargs or {}, {"vocab_size": spec.vocab_size, "seq_len": seq_len}
            )
            if not isinstance(model, keras.Model):
                raise CustomModelError(
                    f"{ref} returned {type(model).__name__}; expected a keras.Model"
                )
            logits = _call(ref, model, tf.zeros((1, seq_len), tf.int64))
    finally:
        keras.config.set_dtype_policy(previous)
    custom.check_logits_shape(ref, logits.shape, 1, seq_len, spec.vocab_size)
    variables = named_variables(model)
    if not variables:
        raise CustomModelError(f"{ref}: the model has no trainable variables")
    kernels = tuple(
        n for n, v in variables.items() if n.rsplit("/", 1)[-1] == "kernel" and len(v.shape) == 2
    )
    weights = {n: np.asarray(tf.cast(v, tf.float32).numpy()) for n, v in variables.items()}
    flops, source = count_flops(model, seq_len)
    built = Built(
        shapes={n: tuple(w.shape) for n, w in weights.items()},
        kernels=kernels,
        weights=weights,
        transposed=frozenset(),
        seq_len=seq_len,
        flops_per_token=flops,
        flops_source=source,
        module=KerasModel(model, variables, policy),
    )
    return custom.remember(dataclasses.replace(spec, built=built))


def _call(ref: str, model: Any, idx: tf.Tensor) -> tf.Tensor:
    try:
        out = model(idx)
    except Exception as exc:  # the user's call: its failure is the factory's
        raise CustomModelError(
            f"{ref}: calling the model on ids {tuple(idx.shape)} failed: "
            f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        ) from None
    if not tf.is_tensor(out):
        raise CustomModelError(f"{ref}: the model returned {type(out).__name__}, not logits")
    return out


def named_variables(model: Any) -> dict[str, Any]:
    """Trainable variables by Keras path (a repeated path gets its position appended)."""
    out: dict[str, Any] = {}
    for i, var in enumerate(model.trainable_variables):
        name = str(getattr(var, "path", None) or var.name)
        out[name if name not in out else f"{name}_{i}"] = var
    return out


MATMUL_OPS = ("MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3", "Einsum")


def count_flops(model: Any, seq_len: int) -> tuple[float | None, str]:
    """Training FLOPs per token over a traced forward and backward of one sequence: 2 FLOPs per
    multiply-add of every matmul-like op in the graph (FlopCounterMode's convention), and where
    they came from."""

    @tf.function
    def step(idx: tf.Tensor) -> list[tf.Tensor]:
        with tf.GradientTape() as tape:
            loss = token_loss_sum(model(idx), idx)
        return tape.gradient(loss, model.trainable_variables)

    try:
        graph = step.get_concrete_function(tf.TensorSpec((1, seq_len), tf.int64)).graph
        total = sum(matmul_flops(op) for op in graph.get_operations() if op.type in MATMUL_OPS)
    except Exception as exc:  # best effort: the record says why there is no figure
        return None, f"unavailable: {type(exc).__name__}: {exc}".splitlines()[0][:200]
    if not total:
        return None, "unavailable: no MatMul, BatchMatMul or Einsum op in the traced step"
    return float(total) / seq_len, "counter (tf graph: MatMul, BatchMatMul, Einsum)"


def matmul_flops(op: Any) -> int:
    """2 × output elements × the contracted size of one MatMul / BatchMatMul / Einsum op."""
    out = op.outputs[0].shape
    if not out.is_fully_defined():
        raise ValueError(f"{op.type} {op.name} has a dynamic shape {out}")
    a = op.inputs[0].shape.as_list()
    if op.type == "MatMul":
        inner = a[0] if op.get_attr("transpose_a") else a[1]
    elif op.type.startswith("BatchMatMul"):
        inner = a[-2] if op.get_attr("adj_x") else a[-1]
    else:
        inner = _einsum_contracted(op)
    return 2 * out.num_elements() * int(inner)


def _einsum_contracted(op: Any) -> int:
    """The product of the sizes of the letters an einsum sums over (in no output)."""
    equation = op.get_attr("equation")
    equation = equation.decode() if isinstance(equation, bytes) else equation
    inputs, output = equation.replace(" ", "").split("->")
    sizes: dict[str, int] = {}
    for spec, tensor in zip(inputs.split(","), op.inputs):
        dims = tensor.shape.as_list()
        head, _, tail = spec.partition("...")
        sizes.update(zip(head, dims[: len(head)]))
        sizes.update(zip(tail, dims[len(dims) - len(tail) :]))
    return int(np.prod([sizes[c] for c in set(sizes) - set(output)]))
