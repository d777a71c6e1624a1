"""What the PyTorch trainer's first optimizer step ran in, checked against the precision label.

The dtypes of the first step are observed (the logits, i.e. the output head's matmul; the LSTM's
output through a forward hook removed after that step; gradients, parameters, AdamW's moments, TF32)
and checked with hlbench.techniques.precision.check_observed: a contradiction raises
PrecisionViolation, which the worker records as `error`. Measured steps carry no hook.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from hlbench.backends.torch.amp import dtype_name, tf32_matmuls_on
from hlbench.techniques import precision


class DtypeObserver:
    """Collects the first step's dtypes in `observed` (framework-neutral names) and checks them."""

    def __init__(self, model: nn.Module, compiled: bool) -> None:
        self.observed: dict[str, Any] = {}
        self._hooks = self._observe_recurrence(model, compiled)

    def _observe_recurrence(self, model: nn.Module, compiled: bool) -> list[Any]:
        """A forward hook recording the LSTM's output dtype. Not under torch.compile: removing a
        hook changes the module's guards, and the recompilation would land in a later step."""

        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            self.observed.setdefault("recurrent_output", dtype_name(output[0].dtype))

        if compiled:
            return []
        return [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.LSTM)]

    def logits(self, logits: torch.Tensor) -> None:
        """The output head's matmul, seen outside the (maybe compiled) model."""
        self.observed.setdefault("matmul_output", dtype_name(logits.dtype))

    def gradients(self, params: list[nn.Parameter]) -> None:
        """The accumulated gradients' dtype, before the optimizer step."""
        self.observed["grad"] = precision.single_dtype([dtype_name(p.grad.dtype) for p in params])

    def check(
        self,
        level: precision.Level,
        params: list[nn.Parameter],
        moments: list[torch.Tensor],
        device: torch.device,
        float8_linear_modules: int,
    ) -> None:
        """After the first optimizer step: remove the hooks, observe the rest, check the label."""
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        self.observed.update(
            param=precision.single_dtype([dtype_name(p.dtype) for p in params]),
            optimizer_state=(
                precision.single_dtype([dtype_name(t.dtype) for t in moments])
                if moments
                else "nothing"
            ),
            tf32=tf32_matmuls_on(device),
        )
        if level.name == "fp8" and float8_linear_modules == 0:
            raise precision.PrecisionViolation(
                "precision 'fp8' did not run as labelled: no Float8Linear module"
            )
        precision.check_observed(level.name, self.observed)
