"""LSTM: embedding -> stacked LSTM -> linear head (not tied)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from hlbench.workloads.base import ModelSpec, normal, uniform

INIT_STD = 0.02
GATE_ORDER = ("i", "f", "g", "o")  # PyTorch's order; Keras's i, f, c, o is the same layout


@dataclasses.dataclass(frozen=True)
class LSTMSpec(ModelSpec):
    """Names and shapes (h = d_hidden, V = vocab): embed (V, d_embed); per layer i:
    lstm.{i}.wx (in_i, 4h) with in_0 = d_embed else h, lstm.{i}.wh (h, 4h), lstm.{i}.b (4h,) -- one
    bias per gate set; the 4h axis holds the gates in order i, f, g, o. Then head.w (h, V),
    head.b (V,).
    A backend with two bias vectors (PyTorch's b_ih, b_hh) loads `b` into one and zeros the other.
    """

    d_embed: int
    d_hidden: int
    n_layer: int

    @property
    def context(self) -> None:
        return None  # recurrent: any length

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        h, V = self.d_hidden, self.vocab_size
        shapes: dict[str, tuple[int, ...]] = {"embed": (V, self.d_embed)}
        for i in range(self.n_layer):
            d_in = self.d_embed if i == 0 else h
            shapes.update(
                {f"lstm.{i}.wx": (d_in, 4 * h), f"lstm.{i}.wh": (h, 4 * h), f"lstm.{i}.b": (4 * h,)}
            )
        shapes.update({"head.w": (h, V), "head.b": (V,)})
        return shapes

    def forget_slice(self) -> slice:
        """Where the forget gate sits along the 4h axis."""
        k = GATE_ORDER.index("f")
        return slice(k * self.d_hidden, (k + 1) * self.d_hidden)

    def init_weights(self, seed: int) -> dict[str, np.ndarray]:
        """embed, head.w Normal(0, 0.02); recurrent kernels Uniform(+-1/sqrt(h)) (PyTorch's
        default); gate biases 0 except the forget gate's, which is 1 so that at init the cell keeps
        its state rather than forgetting it, letting gradients flow across many steps early in
        training (Gers et al. 2000; Jozefowicz et al. 2015; Keras's unit_forget_bias)."""
        bound = 1.0 / math.sqrt(self.d_hidden)
        weights: dict[str, np.ndarray] = {}
        for name, shape in self.param_shapes().items():
            if name in ("embed", "head.w"):
                weights[name] = normal(seed, name, shape, INIT_STD)
            elif name.endswith((".wx", ".wh")):
                weights[name] = uniform(seed, name, shape, bound)
            elif name.startswith("lstm."):  # gate bias
                bias = np.zeros(shape, dtype=np.float32)
                bias[self.forget_slice()] = 1.0
                weights[name] = bias
            else:  # head.b
                weights[name] = np.zeros(shape, dtype=np.float32)
        return weights

    @property
    def n_params_flops(self) -> int:
        """All parameters except the embedding, which is a lookup (no matmul)."""
        return self.n_params - self.vocab_size * self.d_embed

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token = 6*N (N = `n_params_flops`): every weight takes part in one
        multiply-add (2 FLOPs) per token forward, and twice that backward.
        Independent of seq_len."""
        self._check_seq_len(seq_len)
        return float(6 * self.n_params_flops)


PRESETS: dict[str, LSTMSpec] = {
    "tiny": LSTMSpec(model="lstm", size="tiny", vocab_size=256, d_embed=64, d_hidden=64, n_layer=1),
    "small": LSTMSpec(
        model="lstm", size="small", vocab_size=256, d_embed=256, d_hidden=256, n_layer=2
    ),
    "medium": LSTMSpec(
        model="lstm", size="medium", vocab_size=8192, d_embed=512, d_hidden=1024, n_layer=2
    ),
}
