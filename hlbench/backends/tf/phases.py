"""The profile pass's phase breakdown for the TensorFlow trainer (Trainer.profile_phases).

A compiled step is one graph, so its phases cannot be timed from inside it. Instead each phase
boundary gets its own side-effect-free prefix of the step (forward; + backward; + mask;
+ unscale_clip), timed on its own, and a phase is the difference between consecutive prefixes; the
last phase (optimizer) is the real fused step minus everything before it, so the phases add up to
the fused step.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from hlbench.data import Batch
from hlbench.profiling.phases import PhaseTimer

PREFIX_RUNS = 3  # runs per side-effect-free step prefix in the profile pass
PREFIX_PHASES = ("forward", "backward", "mask", "unscale_clip")  # in the step's order


class PhaseProfiling:
    """Mixin of TFTrainer: `profile_phases` from the trainer's own step pieces (`_forward_loss`,
    `_accumulate`, `_mask_gradients`, `_unscale_and_clip`, `_feed`, `_train_step`), so the
    prefixes run exactly the code the fused step runs."""

    device: str
    jit_compile: bool
    mask_vars: dict[str, tf.Variable]
    steps: int

    def _step_prefix(
        self, inputs: tf.Tensor, targets: tf.Tensor, n_tokens: tf.Tensor, *, mask: bool, clip: bool
    ) -> list[tf.Tensor]:
        """The fused step's first part, without side effects: gradients, then masked, then unscaled
        and clipped — the same methods the fused step (`_train_step_fn`) calls, in its order."""
        _, grads = self._accumulate(inputs, targets, n_tokens)
        if mask and self.mask_vars:
            grads = self._mask_gradients(grads)
        if clip:
            grads, *_ = self._unscale_and_clip(grads)
        return grads

    def _phase_functions(self) -> dict[str, Any]:
        """The prefixes, each its own function (one graph per phase boundary, not the fused graph),
        traced on first use: the profile pass's untimed first call. The profile pass also times the
        fused step again on its own, and the tests check the phases' sum against that."""
        if not hasattr(self, "_phase_fns"):
            jit = self.jit_compile

            def prefix(mask: bool, clip: bool) -> Any:
                return tf.function(
                    lambda x, y, n: self._step_prefix(x, y, n, mask=mask, clip=clip),
                    jit_compile=jit,
                )

            self._phase_fns = {
                "forward": tf.function(self._forward_loss, jit_compile=jit),
                "backward": prefix(False, False),
                "mask": prefix(True, False),
                "unscale_clip": prefix(True, True),
            }
        return self._phase_fns

    def profile_phases(self, batch: Batch) -> dict[str, float]:
        timer = PhaseTimer(self.sync)
        with tf.device(self.device):
            with timer.phase("host_to_device"):
                feed = self._feed(batch)
            cumulative_s = self._time_prefixes(timer, feed)
            with timer.phase("optimizer"):  # the real step, once: it trains
                _block(self._train_step(*feed))
            cumulative_s["optimizer"] = timer.seconds.pop("optimizer")
        previous_s = 0.0
        for name, seconds in cumulative_s.items():  # prefix times → phase times
            timer.seconds[name] = max(seconds - previous_s, 0.0)
            previous_s = seconds
        self.steps += 1
        return timer.seconds

    def _time_prefixes(self, timer: PhaseTimer, feed: tuple[Any, ...]) -> dict[str, float]:
        """Seconds of each side-effect-free prefix, in the step's order: the least of a few runs,
        because a phase is a difference of two prefixes and CPU timing noise in either would
        otherwise swamp a short phase (no side effects: repeatable)."""
        fns, cumulative_s = self._phase_functions(), {}
        for name in PREFIX_PHASES:
            if name == "mask" and not self.mask_vars:
                continue
            runs_s = []
            for _ in range(PREFIX_RUNS):
                with timer.phase(name):
                    _block(fns[name](*feed))
                runs_s.append(timer.seconds.pop(name))
            cumulative_s[name] = min(runs_s)
        return cumulative_s


def _block(tensors: Any) -> None:
    """Wait until `tensors` are computed: reading back the smallest of them forces completion of the
    function that produced them all (a function's outputs are delivered together); the PhaseTimer's
    sync then waits for the GPU too."""
    flat = [t for t in tf.nest.flatten(tensors) if hasattr(t, "numpy")]
    if flat:
        min(flat, key=lambda t: int(np.prod(t.shape))).numpy()
