"""The PyTorch backend: builds the workload from its NumPy weights and trains it with AdamW.

Accumulation semantics (DESIGN §3): the loss of an optimizer step is the sum of per-token losses over all
k micro-batches divided by the number of target tokens in the whole step. Each micro-batch's summed loss
is divided by that step-wide count before backward, so the accumulated gradient is the gradient of the
step's loss, whatever the token counts of the micro-batches.

Precision (hlbench.techniques.precision, DESIGN §3), nanoGPT style — no-op objects instead of branches:
- fp32: no autocast (a nullcontext), TF32 off; tf32: TF32 matmuls on (CUDA, compute capability ≥ 8.0);
- bf16 / fp16: torch.autocast(device, dtype) around forward and loss, fp32 master weights; fp16 adds
  torch.amp.GradScaler (a disabled scaler is a no-op for the other levels). Gradients are unscaled
  before clipping (`scaler.unscale_`), and a step with a non-finite gradient is skipped by the scaler;
- bf16-pure: the model cast to bfloat16 after loading the fp32 weights, so parameters, gradients and
  AdamW's moments are bf16 (the fused CPU/CUDA AdamW computes each update in fp32 and stores bf16);
- fp8: torchao's float8 linear layers inside bf16 autocast (CUDA, compute capability ≥ 8.9).
The loss is taken on fp32 logits at every level (autocast does the same for cross_entropy).
The dtypes of the first step are observed (the logits, i.e. the output head's matmul; the LSTM's
output through a forward hook removed after that step) and checked against the label (hlbench.techniques.precision.check_observed): a contradiction raises
PrecisionViolation, which the worker records as `error`.

Data parallel (a cell with `launch`, started by torchrun; hlbench.run.launch): `prepare` joins the process
group (NCCL on GPUs, gloo on CPUs; its timeout is the cell's timeout_s), each rank uses cuda:LOCAL_RANK
or the CPU, and the model is wrapped after its weights are loaded and cast:
- ddp: torch.nn.parallel.DistributedDataParallel; the first k-1 micro-batches run under no_sync(), so
  gradients are all-reduced once per optimizer step, as accumulation means;
- fsdp: FSDP2 (torch.distributed.fsdp.fully_shard) on each GPT block, then on the whole model;
  parameters, gradients and AdamW state are sharded DTensors; gradient sync only on the last
  micro-batch (set_requires_gradient_sync).
Rank r trains rows batch.shard(r, W) of every global batch. Both wrappers *average* gradients over
the W ranks, while the step's gradient is the *sum* of the ranks' (each micro-batch loss is divided by
the global batch's token count), so each rank's loss is multiplied by W before backward (exact for W
a power of two). The step losses are summed over the ranks once, after the windows (no per-step sync).

Test-only hooks (never set them in a real run; see hlbench.techniques.precision):
- HLBENCH_TEST_PRECISION_MISMATCH=1: the level's dtypes are not applied (bf16 autocast for fp32), so
  the first step's check must fail;
- HLBENCH_TEST_NONFINITE_STEP=k: optimizer step k's gradients are made non-finite after backward.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from hlbench.techniques import precision
from hlbench.backends import TORCH
from hlbench.backends.base import Backend, Trainer
from hlbench.errors import SkipCell
from hlbench.backends.torch.models import build_model, load_weights, parameter_map
from hlbench.cell import Cell
from hlbench.data import IGNORE_INDEX, Batch
from hlbench.profiling.phases import PhaseTimer
from hlbench.workloads import model_spec


def resolve_device(requested: str, data_parallel: bool = False) -> torch.device:
    """auto → the first CUDA device when there is one, else the CPU; an absent device skips the cell.
    Data parallel: each rank's own GPU, cuda:LOCAL_RANK (the suite rejects cuda:N with a launcher)."""
    if data_parallel and requested in ("auto", "cuda"):
        if not torch.cuda.is_available():
            if requested == "cuda":
                raise SkipCell("device 'cuda' requested but PyTorch sees no CUDA device")
            return torch.device("cpu")
        requested = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SkipCell(f"device {requested!r} requested but PyTorch sees no CUDA device")
        if (device.index or 0) >= torch.cuda.device_count():
            raise SkipCell(f"device {requested!r} requested but only {torch.cuda.device_count()} CUDA device(s)")
    return device


DTYPES = {precision.FLOAT32: torch.float32, precision.BFLOAT16: torch.bfloat16, precision.FLOAT16: torch.float16}


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def set_fp32_exact() -> None:
    """fp32 means fp32: no TF32 in matmuls or convolutions (PyTorch's default already, made explicit)."""
    set_tf32(False)


def set_tf32(enabled: bool) -> None:
    """TF32 for fp32 matmuls and cuDNN convolutions on (the tf32 level) or off (every other level)."""
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled
    torch.set_float32_matmul_precision("high" if enabled else "highest")


def require_device_for(level: precision.Level, device: torch.device) -> None:
    """SkipCell, with the reason, when `device` cannot run `level` (never a silent fallback)."""
    if level.min_cuda_capability is None:
        return
    need = ".".join(map(str, level.min_cuda_capability))
    what = {"tf32": "tf32 needs an NVIDIA Ampere or newer GPU", "fp8": "fp8 needs an NVIDIA Ada, Hopper or newer GPU"}
    here = "cpu" if device.type != "cuda" else (
        f"{device} ({torch.cuda.get_device_name(device)}, compute capability "
        f"{'.'.join(map(str, torch.cuda.get_device_capability(device)))})")
    if device.type != "cuda" or torch.cuda.get_device_capability(device) < level.min_cuda_capability:
        raise SkipCell(f"{what.get(level.name, level.name)} (compute capability ≥ {need}); this cell's device is {here}")
    if level.name == "fp8":
        try:
            import torchao.float8  # noqa: F401
        except ImportError as exc:
            raise SkipCell(f"fp8 needs torchao (pip install torchao), which is not importable here: {exc}") from None


def convert_to_float8(model: nn.Module) -> int:
    """torchao's float8 training on every nn.Linear whose dimensions float8 GEMMs accept (multiples of
    16); returns how many were converted. The tied GPT head (F.linear on wte) stays in bf16 autocast."""
    from torchao.float8 import convert_to_float8_training

    def eligible(module: nn.Module, fqn: str) -> bool:
        return isinstance(module, nn.Linear) and module.in_features % 16 == 0 and module.out_features % 16 == 0

    convert_to_float8_training(model, module_filter_fn=eligible)
    return sum(type(m).__name__ == "Float8Linear" for m in model.modules())


def make_adamw(param_groups: list[dict[str, Any]], opt: dict[str, Any], device: torch.device) -> tuple[torch.optim.AdamW, str]:
    """AdamW with the fused kernel where this build supports it on `device`, else the foreach one."""
    kwargs = dict(lr=opt["lr"], betas=tuple(opt["betas"]), eps=opt["eps"])
    try:
        return torch.optim.AdamW(param_groups, fused=True, **kwargs), "fused"
    except (RuntimeError, ValueError):  # fused not implemented for this device or dtype
        return torch.optim.AdamW(param_groups, foreach=True, **kwargs), "foreach"


class TorchTrainer(Trainer):
    def __init__(self, cell: Cell, weights: dict[str, np.ndarray], device: torch.device) -> None:
        spec = model_spec(cell)
        self.device = device
        self.vocab_size = spec.vocab_size
        self.accumulation = cell.axes["accumulation"]
        self.grad_clip_norm = cell.optimizer["grad_clip_norm"]
        self.level = precision.level(cell.axes["precision"])
        # Test-only: run other dtypes than the label says, so the check must catch it (module docstring).
        injected = precision.mismatch_injected()
        param_name, compute_name = precision.applied_dtypes(self.level)
        param_dtype, compute_dtype = DTYPES[param_name], DTYPES[compute_name]
        torch.manual_seed(cell.seed)
        model = build_model(spec)
        load_weights(model, spec, weights)  # exactly the fp32 NumPy weights; bf16-pure rounds them next
        self.model = model.to(device=device, dtype=param_dtype).train()
        self.float8_linear_modules = convert_to_float8(self.model) if self.level.name == "fp8" and not injected else 0
        # autocast where the parameters stay fp32 but compute is lower: bf16, fp16, fp8 (nanoGPT's ctx)
        self.autocast_dtype = compute_dtype if compute_dtype != param_dtype else None
        self.scaler = torch.amp.GradScaler(
            device.type, init_scale=precision.LOSS_SCALE_INIT, growth_factor=precision.LOSS_SCALE_GROWTH_FACTOR,
            backoff_factor=precision.LOSS_SCALE_BACKOFF_FACTOR, growth_interval=precision.LOSS_SCALE_GROWTH_INTERVAL,
            enabled=self.level.loss_scaling)
        self._overflow_steps = torch.zeros((), device=device)  # steps the scaler skipped (device-side: no sync)
        self.steps = 0  # train_step calls so far
        self._nonfinite_step = precision.nonfinite_step()  # test-only
        self.observed: dict[str, Any] = {}
        self.compiled = bool(cell.axes.get("compile", False))
        self._hooks = self._observe_recurrence()
        self.strategy = cell.launch["strategy"] if cell.launch else None
        if self.strategy:
            self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        self.wrapped = self._wrap(self.model)
        # torch.compile (TorchInductor) compiles forward and backward lazily, on the first call: the
        # measurement loop's warmup steps, timed as startup. The optimizer step stays eager (fused).
        self.forward = torch.compile(self.wrapped) if self.compiled else self.wrapped
        decay, no_decay = [], []
        self.param_map = parameter_map(self.model, spec)
        for name, (param, _) in self.param_map.items():
            (decay if spec.decayed(name) else no_decay).append(param)
        groups = [
            {"params": decay, "weight_decay": cell.optimizer["weight_decay"]},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        self.params = decay + no_decay
        self.optimizer, self.optimizer_impl = make_adamw(groups, cell.optimizer, device)
        self.masks: dict[torch.nn.Parameter, torch.Tensor] = {}  # pruned parameters (apply_masks)

    def _wrap(self, model: nn.Module) -> nn.Module:
        """The data-parallel wrapper of the cell's strategy (module docstring); the model itself without one."""
        if self.strategy == "ddp":
            from torch.nn.parallel import DistributedDataParallel

            return DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if self.strategy == "fsdp":
            from torch.distributed.fsdp import fully_shard

            for block in getattr(model, "h", []):  # GPT blocks: one all-gather / reduce-scatter unit each
                fully_shard(block)
            fully_shard(model)  # the rest (embeddings, tied head, final LayerNorm; the whole LSTM)
        return model

    def _gradient_sync(self, on: bool) -> AbstractContextManager[Any]:
        """Gradients are synchronised across ranks only on the step's last micro-batch."""
        if self.strategy == "ddp" and not on:
            return self.wrapped.no_sync()
        if self.strategy == "fsdp":
            self.model.set_requires_gradient_sync(on)
        return nullcontext()

    def _to_device(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(array).to(self.device, non_blocking=True)

    def _ctx(self) -> AbstractContextManager[Any]:
        """Autocast for the mixed levels, a no-op context otherwise."""
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _observe_recurrence(self) -> list[Any]:
        """A forward hook recording the LSTM's output dtype, removed after the first train step so
        measured steps carry no hook. Not under torch.compile: removing a hook changes the module's
        guards, and the recompilation would land in a later step."""
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            self.observed.setdefault("recurrent_output", dtype_name(output[0].dtype))

        if self.compiled:
            return []
        return [m.register_forward_hook(hook) for m in self.model.modules() if isinstance(m, nn.LSTM)]

    def accumulate_gradients(self, batch: Batch, timer: PhaseTimer | None = None) -> torch.Tensor:
        """Forward and backward over the k micro-batches of `batch`; returns the step's loss (on device).
        With fp16 the gradients are those of the loss times the scaler's scale (unscaled later).
        `timer` (the profile pass only) times the transfer and the k forwards and backwards as phases."""
        n_tokens = batch.n_target_tokens  # of the global batch, counted on the host: no device sync
        if self.world_size > 1:
            batch = batch.shard(self.rank, self.world_size)  # this rank's rows
        with timer.phase("host_to_device") if timer else nullcontext():
            inputs, targets = self._to_device(batch.inputs), self._to_device(batch.targets)
        micro = len(batch) // self.accumulation
        loss_sum = torch.zeros((), device=self.device)
        for i in range(self.accumulation):
            rows = slice(i * micro, (i + 1) * micro)
            # data parallel: forward and backward of all but the last micro-batch without gradient sync
            with self._gradient_sync(on=i == self.accumulation - 1):
                with timer.phase("forward") if timer else nullcontext():
                    with self._ctx():
                        logits = self.forward(inputs[rows])  # (b, T, V)
                        if self.steps == 0:  # the output head's matmul, seen outside the (maybe compiled) model
                            self.observed.setdefault("matmul_output", dtype_name(logits.dtype))
                        micro_sum = F.cross_entropy(
                            logits.float().reshape(-1, self.vocab_size), targets[rows].reshape(-1),
                            ignore_index=IGNORE_INDEX, reduction="sum",
                        )
                with timer.phase("backward") if timer else nullcontext():
                    step_loss = micro_sum / n_tokens
                    if self.world_size > 1:  # the wrappers average over ranks; the step needs the sum
                        step_loss = step_loss * self.world_size
                    self.scaler.scale(step_loss).backward()
            loss_sum += micro_sum.detach()
        return loss_sum / n_tokens

    def _mask_gradients(self) -> None:
        # pruned weights get no gradient, so their AdamW moments and update stay 0
        torch._foreach_mul_([p.grad for p in self.masks], list(self.masks.values()))

    def _unscale_and_clip(self) -> None:
        self.scaler.unscale_(self.optimizer)  # before clipping: clip the true gradient (no-op unless fp16)
        if self.grad_clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip_norm, foreach=True)
        if self.scaler.is_enabled():
            # found_inf as the scaler computed it in unscale_ (a private method, but the only sync-free
            # way to count skipped steps: get_scale() would read the scale back every step)
            self._overflow_steps += sum(self.scaler._found_inf_per_device(self.optimizer).values())

    def _optimizer_step(self) -> None:
        self.scaler.step(self.optimizer)  # skips the update when a gradient is non-finite (fp16)
        self.scaler.update()  # fp16: ×0.5 after an overflow, ×2 after 2000 finite steps

    def train_step(self, batch: Batch) -> torch.Tensor:
        loss = self.accumulate_gradients(batch)
        if self.masks:
            self._mask_gradients()
        if self.steps == self._nonfinite_step:  # test-only (module docstring)
            self.params[0].grad.view(-1)[0] = float("inf")
        first = self.steps == 0
        if first:
            self.observed["grad"] = precision.single_dtype([dtype_name(p.grad.dtype) for p in self.params])
        self._unscale_and_clip()
        self._optimizer_step()
        if first:
            self._check_first_step()
        self.optimizer.zero_grad(set_to_none=True)
        self.steps += 1
        return loss

    def profile_phases(self, batch: Batch) -> dict[str, float]:
        """One optimizer step through train_step's own methods, each phase timed between syncs (the
        profile pass runs this after the measured windows; the first-step checks have run by then)."""
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

    def _check_first_step(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        state = [t for s in self.optimizer.state.values() for k, t in s.items() if k in ("exp_avg", "exp_avg_sq")]
        self.observed.update(
            param=precision.single_dtype([dtype_name(p.dtype) for p in self.params]),
            optimizer_state=precision.single_dtype([dtype_name(t.dtype) for t in state]) if state else "nothing",
            tf32=bool(torch.backends.cuda.matmul.allow_tf32) and self.device.type == "cuda",
        )
        if self.level.name == "fp8" and self.float8_linear_modules == 0:
            raise precision.PrecisionViolation("precision 'fp8' did not run as labelled: no Float8Linear module")
        precision.check_observed(self.level.name, self.observed)

    def gradients(self, batch: Batch) -> tuple[float, dict[str, np.ndarray]]:
        loss = self.accumulate_gradients(batch)
        inv_scale = 1.0 / self.scaler.get_scale() if self.scaler.is_enabled() else 1.0
        grads = {}
        for name, (param, transposed) in self.param_map.items():
            grad = (_full(param.grad).detach().float() * inv_scale).cpu().numpy()
            grads[name] = np.ascontiguousarray(grad.T if transposed else grad)
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss), grads

    @torch.no_grad()
    def apply_masks(self, masks: dict[str, np.ndarray]) -> None:
        for name, mask in masks.items():
            param, transposed = self.param_map[name]
            keep = torch.from_numpy(np.ascontiguousarray(mask.T if transposed else mask))
            keep = _like(param, keep.to(device=param.device, dtype=param.dtype))  # FSDP: this rank's shard
            param.mul_(keep)
            state = self.optimizer.state.get(param, {})
            for key in ("exp_avg", "exp_avg_sq"):  # absent before the first step
                if key in state:
                    state[key].mul_(keep)
            self.masks[param] = keep

    def weights(self) -> dict[str, np.ndarray]:
        return {
            name: np.ascontiguousarray((_full(p).T if transposed else _full(p)).detach().float().cpu().numpy())
            for name, (p, transposed) in self.param_map.items()
        }

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def losses_to_floats(self, losses: list[Any]) -> list[float]:
        if not losses:
            return []
        stacked = torch.stack(losses)
        if self.world_size > 1:  # each rank's loss is its rows' share of the step's: the sum is the step's
            dist.all_reduce(stacked, op=dist.ReduceOp.SUM)
        return stacked.tolist()  # one transfer, one sync

    @torch.no_grad()
    def eval_loss(self, batches: list[Batch]) -> float:
        self.model.eval()
        total, tokens = torch.zeros((), device=self.device, dtype=torch.float64), 0
        for batch in batches:
            with self._ctx():
                logits = self.forward(self._to_device(batch.inputs))
            total += F.cross_entropy(
                logits.float().reshape(-1, self.vocab_size), self._to_device(batch.targets).reshape(-1),
                ignore_index=IGNORE_INDEX, reduction="sum",
            ).double()
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
                "framework_memory_reason": "PyTorch keeps no allocator statistics for the CPU; see host_peak_rss_bytes",
            }
        return {
            # tensors alive at the peak of the measured windows (the caching allocator's own count)
            "torch_cuda_max_allocated_bytes": torch.cuda.max_memory_allocated(self.device),
            # what the caching allocator held from the driver at its peak (≥ allocated)
            "torch_cuda_max_reserved_bytes": torch.cuda.max_memory_reserved(self.device),
            "framework_memory_reason": None,
        }

    def _applied(self) -> str:
        """What this trainer applied, in the framework's own terms."""
        parts = [f"parameters {dtype_name(self.params[0].dtype)}"]
        if self.autocast_dtype is not None:
            parts.append(f"torch.autocast({dtype_name(self.autocast_dtype)})")
        if self.float8_linear_modules:
            parts.append(f"torchao Float8Linear ×{self.float8_linear_modules}")
        if self.scaler.is_enabled():
            parts.append("torch.amp.GradScaler")
        if torch.backends.cuda.matmul.allow_tf32 and self.device.type == "cuda":
            parts.append("TF32 matmuls")
        return " + ".join(parts)

    def info(self) -> dict[str, Any]:
        state = [t for s in self.optimizer.state.values() for k, t in s.items() if k in ("exp_avg", "exp_avg_sq")]
        return {
            "device": str(self.device),
            "optimizer_impl": self.optimizer_impl,
            "param_dtype": str(self.params[0].dtype).removeprefix("torch."),
            "precision": self._applied(),
            "dtypes": dict(self.observed),  # observed in the first step and checked against the label
            "loss_scale_final": self.scaler.get_scale() if self.scaler.is_enabled() else None,
            "overflow_skipped_steps": int(self._overflow_steps.item()) if self.scaler.is_enabled() else None,
            "float8_linear_modules": self.float8_linear_modules,
            # what bf16-pure saves over the mixed levels, by construction (the allocator peak is in `memory`)
            "param_bytes": sum(p.numel() * p.element_size() for p in self.params),
            "optimizer_state_bytes": sum(t.numel() * t.element_size() for t in state),
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
            "tf32_cudnn": torch.backends.cudnn.allow_tf32,
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "torch_num_threads": torch.get_num_threads(),
            "torch_compile": self.compiled,
            "sparse_execution": "dense kernels with masks" if self.masks else None,
            "strategy": self._strategy_text(),
        }

    def _strategy_text(self) -> str | None:
        if not self.strategy:
            return None
        name = {"ddp": "DistributedDataParallel", "fsdp": "FSDP2 fully_shard"}[self.strategy]
        return f"{name} over {self.world_size} ranks ({dist.get_backend()})"

    def all_gather_objects(self, obj: Any) -> list[Any]:
        if not self.strategy:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out


def _full(tensor: torch.Tensor) -> torch.Tensor:
    """The whole tensor: an FSDP-sharded DTensor gathered from every rank (a collective), else itself."""
    return tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor


def _like(param: torch.Tensor, full: torch.Tensor) -> torch.Tensor:
    """`full` laid out like `param`: sharded the same way when param is an FSDP DTensor."""
    if not hasattr(param, "device_mesh"):
        return full
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(full, param.device_mesh, param.placements)


class TorchBackend(Backend):
    name = "torch"

    def prepare(self, cell: Cell) -> None:
        """Data parallel: join torchrun's process group (its env:// rendezvous), NCCL on GPUs, gloo on CPUs."""
        if not cell.launch or dist.is_initialized():
            return
        device = resolve_device(cell.device, data_parallel=True)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                timeout=timedelta(seconds=cell.measurement["timeout_s"]))

    def shutdown(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()

    def environment(self, device: str) -> dict[str, Any]:
        env: dict[str, Any] = {
            "framework": "torch",
            "torch_version": torch.__version__,
            "cuda_version": torch.version.cuda,
            "cudnn_version": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
            "gpus": [],
        }
        if torch.cuda.is_available():
            env["gpus"] = [
                {
                    "index": i,
                    "name": torch.cuda.get_device_name(i),
                    "capability": ".".join(map(str, torch.cuda.get_device_capability(i))),
                    "memory_total_bytes": torch.cuda.get_device_properties(i).total_memory,
                }
                for i in range(torch.cuda.device_count())
            ]
            env["driver_version"] = _nvidia_driver_version()
        return env

    def build(self, cell: Cell, weights: dict[str, np.ndarray]) -> TorchTrainer:
        device = resolve_device(cell.device, data_parallel=bool(cell.launch))
        # The registry's spec is the one list of what this backend implements; the runner skips such
        # cells before spawning, and this guards in-process callers (tests, benchmarks) the same way.
        reason = TORCH.unsupported_reason_for(cell)
        if reason:
            raise SkipCell(reason)
        if (cell.techniques.get("pruning") or {}).get("sparse_kernels"):
            # PyTorch's to_sparse_semi_structured serves inference; training through semi-structured
            # kernels needs torchao's sparse training, which hlbench does not wire up yet.
            raise SkipCell("2:4 with sparse_kernels: semi-structured sparse training kernels are not "
                           "implemented in hlbench yet; use sparse_kernels: false (masks on dense kernels)")
        level = precision.level(cell.axes["precision"])
        require_device_for(level, device)
        if cell.launch and cell.launch["strategy"] == "fsdp" and level.loss_scaling:
            # found_inf would be judged per shard, so ranks could disagree on skipping a step
            raise SkipCell("fp16 with fsdp: loss scaling over sharded gradients needs a sharded grad scaler, "
                           "which hlbench does not wire up; use bf16 or ddp")
        set_tf32(level.tf32)
        return TorchTrainer(cell, weights, device)

    def is_oom(self, exc: BaseException) -> bool:
        return isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)) or (
            isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
        )


def _nvidia_driver_version() -> str | None:
    """The driver version via NVML when nvidia-ml-py is installed (telemetry brings more)."""
    try:
        import pynvml  # nvidia-ml-py; optional
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        try:
            version = pynvml.nvmlSystemGetDriverVersion()
        finally:
            pynvml.nvmlShutdown()
    except pynvml.NVMLError:
        return None
    return version.decode() if isinstance(version, bytes) else version
