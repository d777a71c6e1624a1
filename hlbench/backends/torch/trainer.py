"""The PyTorch trainer: builds the workload from its NumPy weights and trains it with AdamW.

Accumulation: the loss of an optimizer step is the sum of per-token losses over all k micro-batches
divided by the number of target tokens in the whole step. Each micro-batch's summed loss is divided
by that step-wide count before backward, so the accumulated gradient is the gradient of the step's
loss, whatever the token counts of the micro-batches.

Precision setup is in hlbench.backends.torch.amp, the first step's dtype check in
hlbench.backends.torch.observe.

Data parallel (hlbench.backends.torch.distribute): rank r trains rows batch.shard(r, W) of every
global batch. Both wrappers *average* gradients over the W ranks, while the step's gradient is the
*sum* of the ranks' (each micro-batch loss is divided by the global batch's token count), so each
rank's loss is multiplied by W before backward (exact for W a power of two). The step losses are
summed over the ranks once, after the windows (no per-step sync).

Test-only hooks (never set them in a real run; read in hlbench.techniques.test_hooks):
- HLBENCH_TEST_PRECISION_MISMATCH=1: the level's dtypes are not applied (bf16 autocast for fp32), so
  the first step's check must fail;
- HLBENCH_TEST_NONFINITE_STEP=k: optimizer step k's gradients are made non-finite after backward.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hlbench.backends.base import Trainer
from hlbench.backends.timers import StepTimer
from hlbench.backends.torch import amp, distribute, optim, prune
from hlbench.backends.torch.models import build_model, load_weights, parameter_map
from hlbench.backends.torch.observe import DtypeObserver
from hlbench.backends.torch.timing import EventTimer
from hlbench.cell import Cell
from hlbench.data import IGNORE_INDEX, Batch
from hlbench.profiling.phases import PhaseTimer
from hlbench.techniques import precision, test_hooks
from hlbench.workloads import ModelSpec


class TorchTrainer(Trainer):
    def __init__(
        self,
        cell: Cell,
        spec: ModelSpec,
        level: precision.Level,
        weights: dict[str, np.ndarray],
        device: torch.device,
    ) -> None:
        self.device = device
        self.vocab_size = spec.vocab_size
        self.accumulation = cell.axes["accumulation"]
        self.grad_clip_norm = cell.optimizer.grad_clip_norm
        self.level = level
        self.model = self._load_model(cell, spec, weights)
        self.scaler = amp.grad_scaler(self.level, device)
        # steps the scaler skipped, counted on the device: no sync
        self._overflow_steps = torch.zeros((), device=device)
        self.steps = 0  # train_step calls so far
        self._nonfinite_step = test_hooks.nonfinite_step()
        self.compiled = bool(cell.axes.get("compile", False))
        self.observer = DtypeObserver(self.model, self.compiled)
        self.strategy = cell.launch.strategy if cell.launch else None
        if self.strategy:
            self.rank, self.world_size = distribute.rank_and_world_size()
        self.wrapped = distribute.wrap(self.model, self.strategy, device)
        # torch.compile (TorchInductor) compiles forward and backward lazily, on the first call: the
        # measurement loop's warmup steps, timed as startup. The optimizer step stays eager (fused).
        self.forward = torch.compile(self.wrapped) if self.compiled else self.wrapped
        self.param_map = parameter_map(self.model, spec)
        groups, self.params = optim.param_groups(self.param_map, spec, cell.optimizer.weight_decay)
        self.optimizer, self.optimizer_impl = optim.make_adamw(groups, cell.optimizer, device)
        self.lr_scheduler = optim.make_scheduler(self.optimizer, cell.optimizer)
        self.masks: dict[torch.nn.Parameter, torch.Tensor] = {}  # pruned parameters (apply_masks)
        self._grad_norms: list[torch.Tensor] = []  # per train_step, on the device (health)

    def _load_model(self, cell: Cell, spec: ModelSpec, weights: dict[str, np.ndarray]) -> nn.Module:
        """The model with exactly the fp32 NumPy weights, on the device in the level's storage dtype
        (bf16-pure rounds them), float8 layers for fp8; sets the autocast dtype."""
        # Test-only: run other dtypes than the label says, so the check must catch it.
        injected = test_hooks.precision_mismatch()
        param_name, compute_name = precision.applied_dtypes(self.level)
        param_dtype, compute_dtype = amp.DTYPES[param_name], amp.DTYPES[compute_name]
        torch.manual_seed(cell.seed)
        model = build_model(spec)
        load_weights(model, spec, weights)
        model = model.to(device=self.device, dtype=param_dtype).train()
        fp8 = self.level.name == "fp8" and not injected
        self.float8_linear_modules = amp.convert_to_float8(model) if fp8 else 0
        # autocast where the parameters stay fp32 but compute is lower: bf16, fp16, fp8 (nanoGPT's
        # ctx)
        self.autocast_dtype = compute_dtype if compute_dtype != param_dtype else None
        return model

    def _to_device(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(array).to(self.device, non_blocking=True)

    def _ctx(self) -> AbstractContextManager[Any]:
        """Autocast for the mixed levels, a no-op context otherwise."""
        return amp.autocast(self.device, self.autocast_dtype)

    def _summed_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The sum of per-token losses, on fp32 logits at every level."""
        return F.cross_entropy(
            logits.float().reshape(-1, self.vocab_size),
            targets.reshape(-1),
            ignore_index=IGNORE_INDEX,
            reduction="sum",
        )

    def accumulate_gradients(self, batch: Batch, timer: PhaseTimer | None = None) -> torch.Tensor:
        """Forward and backward over the k micro-batches of `batch`; returns the step's loss (on
        device). With fp16 the gradients are those of the loss times the scaler's scale (unscaled
        later). `timer` (the profile pass only) times the transfer and the k forwards and backwards
        as phases."""
        n_tokens = batch.n_target_tokens  # of the global batch, counted on the host: no device sync
        if self.world_size > 1:
            batch = batch.shard(self.rank, self.world_size)  # this rank's rows
        with timer.phase("host_to_device") if timer else nullcontext():
            inputs, targets = self._to_device(batch.inputs), self._to_device(batch.targets)
        micro = len(batch) // self.accumulation
        loss_sum = torch.zeros((), device=self.device)
        for i in range(self.accumulation):
            rows = slice(i * micro, (i + 1) * micro)
            # data parallel: gradients are synchronised on the last micro-batch's backward only
            last = i == self.accumulation - 1
            with distribute.gradient_sync(self.strategy, self.model, self.wrapped, last):
                micro_sum = self._micro_forward(inputs[rows], targets[rows], timer)
                with timer.phase("backward") if timer else nullcontext():
                    step_loss = micro_sum / n_tokens
                    # the wrappers average over ranks; the step needs the sum
                    if self.world_size > 1:
                        step_loss = step_loss * self.world_size
                    self.scaler.scale(step_loss).backward()
            loss_sum += micro_sum.detach()
        return loss_sum / n_tokens

    def _micro_forward(
        self, inputs: torch.Tensor, targets: torch.Tensor, timer: PhaseTimer | None
    ) -> torch.Tensor:
        """One micro-batch's forward and summed loss, under the level's autocast."""
        with timer.phase("forward") if timer else nullcontext(), self._ctx():
            logits = self.forward(inputs)  # (b, T, V)
            if self.steps == 0:
                self.observer.logits(logits)
            return self._summed_loss(logits, targets)

    def _mask_gradients(self) -> None:
        # pruned weights get no gradient, so their AdamW moments and update stay 0
        torch._foreach_mul_([p.grad for p in self.masks], list(self.masks.values()))

    def _unscale_and_clip(self) -> torch.Tensor:
        """Unscale (fp16) and clip; returns the global gradient norm before clipping, on the
        device (clipping computes it anyway; without clipping it costs one fused reduction)."""
        # before clipping: clip the true gradient (a no-op unless fp16)
        self.scaler.unscale_(self.optimizer)
        if self.grad_clip_norm is not None:
            norm = torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip_norm, foreach=True)
        else:
            grads = [p.grad for p in self.params if p.grad is not None]
            norm = torch.nn.utils.get_total_norm(grads, foreach=True)
        if self.scaler.is_enabled():
            # found_inf as the scaler computed it in unscale_ (a private method, but the only
            # sync-free way to count skipped steps: get_scale() would read the scale back each step)
            found_inf = self.scaler._found_inf_per_device(self.optimizer)
            self._overflow_steps += sum(found_inf.values())
        return norm.detach()

    def _optimizer_step(self) -> None:
        self.scaler.step(self.optimizer)  # skips the update when a gradient is non-finite (fp16)
        self.scaler.update()  # fp16: ×0.5 after an overflow, ×2 after 2000 finite steps
        if self.lr_scheduler is not None:
            self.lr_scheduler.step()  # host arithmetic only: sets the groups' lr for the next step

    def train_step(self, batch: Batch) -> torch.Tensor:
        loss = self.accumulate_gradients(batch)
        if self.masks:
            self._mask_gradients()
        if self.steps == self._nonfinite_step:  # test-only (module docstring)
            self.params[0].grad.view(-1)[0] = float("inf")
        first = self.steps == 0
        if first:
            self.observer.gradients(self.params)
        self._grad_norms.append(self._unscale_and_clip())
        self._optimizer_step()
        if first:
            self.observer.check(
                self.level,
                self.params,
                optim.moments(self.optimizer),
                self.device,
                self.float8_linear_modules,
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.steps += 1
        return loss

    def profile_phases(self, batch: Batch) -> dict[str, float]:
        """One optimizer step through train_step's own methods, each phase timed between syncs
        (the profile pass runs this after the measured windows; the first-step checks have run by
        then)."""
        timer = PhaseTimer(self.sync)
        self.accumulate_gradients(batch, timer)
        if self.masks:
            with timer.phase("mask"):
                self._mask_gradients()
        with timer.phase("unscale_clip"):
            self._unscale_and_clip()
        with timer.phase("optimizer"):
            self._optimizer_step()
            self.optimizer.zero_grad(set_to_none=True)
        self.steps += 1
        return timer.seconds

    def profile_trace(self, batch: Batch, out_dir: Path) -> dict[str, Any]:
        from hlbench.backends.torch.trace import trace_steps

        return trace_steps(self, batch, out_dir)

    def gradients(self, batch: Batch) -> tuple[float, dict[str, np.ndarray]]:
        loss = self.accumulate_gradients(batch)
        inv_scale = 1.0 / self.scaler.get_scale() if self.scaler.is_enabled() else 1.0
        grads = {}
        for name, (param, transposed) in self.param_map.items():
            grad = (distribute.full_tensor(param.grad).detach().float() * inv_scale).cpu().numpy()
            grads[name] = np.ascontiguousarray(grad.T if transposed else grad)
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss), grads

    @torch.no_grad()
    def apply_masks(self, masks: dict[str, np.ndarray]) -> None:
        for name, mask in masks.items():
            param, transposed = self.param_map[name]
            keep = torch.from_numpy(np.ascontiguousarray(mask.T if transposed else mask))
            # FSDP: this rank's shard of the mask
            self._mask(param, distribute.shard_like(param, keep.to(param.device, param.dtype)))

    @torch.no_grad()
    def prune_magnitude(self, names: list[str], sparsity: float) -> None:
        """The masks selected on the parameters' device (hlbench.backends.torch.prune); FSDP's
        sharded parameters take the NumPy path over the full tensors."""
        if self.strategy == "fsdp":
            return super().prune_magnitude(names, sparsity)
        neutral = [self._neutral(n) for n in names]
        for name, keep in zip(names, prune.magnitude_keep(neutral, sparsity)):
            self._mask_neutral(name, keep)

    @torch.no_grad()
    def prune_structured(self, spec: ModelSpec, sparsity: float) -> None:
        """Units scored on the parameters' device (hlbench.backends.torch.prune), layer by layer;
        FSDP's sharded parameters take the NumPy path over the full tensors."""
        if self.strategy == "fsdp":
            return super().prune_structured(spec, sparsity)
        for name, keep in prune.structured_keeps(spec, self._neutral, sparsity):
            self._mask_neutral(name, keep)

    @torch.no_grad()
    def prune_n_m(self, names: list[str]) -> None:
        """2:4 masks selected on the parameters' device; FSDP: the NumPy path."""
        if self.strategy == "fsdp":
            return super().prune_n_m(names)
        for name in names:
            self._mask_neutral(name, prune.n_m_keep(name, self._neutral(name)))

    def _neutral(self, name: str) -> torch.Tensor:
        """Parameter `name` in its neutral layout (a transposed view, no copy)."""
        param, transposed = self.param_map[name]
        return param.t() if transposed else param

    def _mask_neutral(self, name: str, keep: torch.Tensor) -> None:
        param, transposed = self.param_map[name]
        self._mask(param, (keep.t() if transposed else keep).to(param.dtype))

    def _mask(self, param: torch.nn.Parameter, keep: torch.Tensor) -> None:
        """The parameter and its AdamW moments multiplied by `keep` now, its gradient at every
        later step."""
        param.mul_(keep)
        state = self.optimizer.state.get(param, {})
        for key in optim.MOMENT_KEYS:  # absent before the first step
            if key in state:
                state[key].mul_(keep)
        self.masks[param] = keep.contiguous()

    def step_timer(self) -> StepTimer | None:
        """CUDA: an event per step, one sync per window (hlbench.backends.torch.timing)."""
        return EventTimer() if self.device.type == "cuda" else None

    def weights(self) -> dict[str, np.ndarray]:
        out = {}
        for name, (param, transposed) in self.param_map.items():
            full = distribute.full_tensor(param)
            full = full.T if transposed else full
            out[name] = np.ascontiguousarray(full.detach().float().cpu().numpy())
        return out

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def losses_to_floats(self, losses: list[Any]) -> list[float]:
        if not losses:
            return []
        stacked = torch.stack(losses)
        # each rank's loss is its rows' share of the step's: the sum over ranks is the step's
        if self.world_size > 1:
            distribute.sum_over_ranks(stacked)
        return stacked.tolist()  # one transfer, one sync

    def grad_norms_to_floats(self) -> list[float] | None:
        if not self._grad_norms:
            return []
        # FSDP's norm is a DTensor: gathered in rank order on every rank (a collective)
        norms = [distribute.full_tensor(n).float() for n in self._grad_norms]
        return torch.stack(norms).tolist()  # one transfer, one sync

    @torch.no_grad()
    def eval_loss(self, batches: list[Batch]) -> float:
        self.model.eval()
        total = torch.zeros((), device=self.device, dtype=torch.float64)
        tokens = 0
        for batch in batches:
            with self._ctx():
                logits = self.forward(self._to_device(batch.inputs))
            total += self._summed_loss(logits, self._to_device(batch.targets)).double()
            tokens += batch.n_target_tokens
        self.model.train()
        return total.item() / tokens

    def reset_peak_memory(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def memory(self) -> dict[str, Any]:
        if self.device.type != "cuda":
            return {
                "torch_cuda_max_allocated_bytes": None,
                "torch_cuda_max_reserved_bytes": None,
                "framework_memory_reason": (
                    "PyTorch keeps no allocator statistics for the CPU; see host_peak_rss_bytes"
                ),
            }
        return {
            # tensors alive at the peak of the measured windows (the caching allocator's own count)
            "torch_cuda_max_allocated_bytes": torch.cuda.max_memory_allocated(self.device),
            # what the caching allocator held from the driver at its peak (≥ allocated)
            "torch_cuda_max_reserved_bytes": torch.cuda.max_memory_reserved(self.device),
            "framework_memory_reason": None,
        }

    def info(self) -> dict[str, Any]:
        moments = optim.moments(self.optimizer)
        scaling = self.scaler.is_enabled()
        return {
            "device": str(self.device),
            "optimizer_impl": self.optimizer_impl,
            "param_dtype": amp.dtype_name(self.params[0].dtype),
            "precision": amp.describe_applied(
                self.params[0].dtype,
                self.autocast_dtype,
                self.float8_linear_modules,
                self.scaler,
                self.device,
            ),
            # observed in the first step and checked against the label
            "dtypes": dict(self.observer.observed),
            "loss_scale_final": self.scaler.get_scale() if scaling else None,
            "overflow_skipped_steps": int(self._overflow_steps.item()) if scaling else None,
            "float8_linear_modules": self.float8_linear_modules,
            # what bf16-pure saves over the mixed levels, by construction (the allocator peak is in
            # `memory`)
            "param_bytes": sum(p.numel() * p.element_size() for p in self.params),
            "optimizer_state_bytes": sum(t.numel() * t.element_size() for t in moments),
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
            "tf32_cudnn": torch.backends.cudnn.allow_tf32,
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "torch_num_threads": torch.get_num_threads(),
            "torch_compile": self.compiled,
            "sparse_execution": "dense kernels with masks" if self.masks else None,
            "strategy": (
                distribute.strategy_text(self.strategy, self.world_size) if self.strategy else None
            ),
        }

    def all_gather_objects(self, obj: Any) -> list[Any]:
        if not self.strategy:
            return [obj]
        return distribute.all_gather_objects(obj, self.world_size)
