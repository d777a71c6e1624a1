"""The PyTorch backend: builds the workload from its NumPy weights and trains it with AdamW.

Accumulation semantics (DESIGN §3): the loss of an optimizer step is the sum of per-token losses over all
k micro-batches divided by the number of target tokens in the whole step. Each micro-batch's summed loss
is divided by that step-wide count before backward, so the accumulated gradient is the gradient of the
step's loss, whatever the token counts of the micro-batches.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from hlbench.backends import TORCH
from hlbench.backends.base import Backend, SkipCell, Trainer
from hlbench.backends.torch_models import build_model, load_weights, parameter_map
from hlbench.cell import Cell
from hlbench.data import IGNORE_INDEX, Batch
from hlbench.train import model_spec


def resolve_device(requested: str) -> torch.device:
    """auto → the first CUDA device when there is one, else the CPU; an absent device skips the cell."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SkipCell(f"device {requested!r} requested but PyTorch sees no CUDA device")
        if (device.index or 0) >= torch.cuda.device_count():
            raise SkipCell(f"device {requested!r} requested but only {torch.cuda.device_count()} CUDA device(s)")
    return device


def set_fp32_exact() -> None:
    """fp32 means fp32: no TF32 in matmuls or convolutions (PyTorch's default already, made explicit)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")


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
        torch.manual_seed(cell.seed)
        model = build_model(spec)
        load_weights(model, spec, weights)
        self.model = model.to(device).train()
        self.compiled = bool(cell.axes.get("compile", False))
        # torch.compile (TorchInductor) compiles forward and backward lazily, on the first call: the
        # measurement loop's warmup steps, timed as startup. The optimizer step stays eager (fused).
        self.forward = torch.compile(self.model) if self.compiled else self.model
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

    def _to_device(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(array).to(self.device, non_blocking=True)

    def accumulate_gradients(self, batch: Batch) -> torch.Tensor:
        """Forward and backward over the k micro-batches of `batch`; returns the step's loss (on device)."""
        inputs, targets = self._to_device(batch.inputs), self._to_device(batch.targets)
        n_tokens = batch.n_target_tokens  # counted on the host: no device sync
        micro = len(batch) // self.accumulation
        loss_sum = torch.zeros((), device=self.device)
        for i in range(self.accumulation):
            rows = slice(i * micro, (i + 1) * micro)
            logits = self.forward(inputs[rows])  # (b, T, V)
            micro_sum = F.cross_entropy(
                logits.reshape(-1, self.vocab_size), targets[rows].reshape(-1),
                ignore_index=IGNORE_INDEX, reduction="sum",
            )
            (micro_sum / n_tokens).backward()
            loss_sum += micro_sum.detach()
        return loss_sum / n_tokens

    def train_step(self, batch: Batch) -> torch.Tensor:
        loss = self.accumulate_gradients(batch)
        if self.grad_clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip_norm, foreach=True)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss

    def gradients(self, batch: Batch) -> tuple[float, dict[str, np.ndarray]]:
        loss = self.accumulate_gradients(batch)
        grads = {}
        for name, (param, transposed) in self.param_map.items():
            grad = param.grad.detach().cpu().numpy()
            grads[name] = np.ascontiguousarray(grad.T if transposed else grad)
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss), grads

    def weights(self) -> dict[str, np.ndarray]:
        return {
            name: np.ascontiguousarray((p.T if transposed else p).detach().float().cpu().numpy())
            for name, (p, transposed) in self.param_map.items()
        }

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def losses_to_floats(self, losses: list[Any]) -> list[float]:
        return torch.stack(losses).tolist() if losses else []  # one transfer, one sync

    @torch.no_grad()
    def eval_loss(self, batches: list[Batch]) -> float:
        self.model.eval()
        total, tokens = torch.zeros((), device=self.device, dtype=torch.float64), 0
        for batch in batches:
            logits = self.forward(self._to_device(batch.inputs))
            total += F.cross_entropy(
                logits.reshape(-1, self.vocab_size), self._to_device(batch.targets).reshape(-1),
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

    def info(self) -> dict[str, Any]:
        return {
            "device": str(self.device),
            "optimizer_impl": self.optimizer_impl,
            "param_dtype": str(self.params[0].dtype).removeprefix("torch."),
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
            "tf32_cudnn": torch.backends.cudnn.allow_tf32,
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "torch_num_threads": torch.get_num_threads(),
            "torch_compile": self.compiled,
        }


class TorchBackend(Backend):
    name = "torch"

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
        device = resolve_device(cell.device)
        # The registry's spec is the one list of what this backend implements; the runner skips such
        # cells before spawning, and this guards in-process callers (tests, benchmarks) the same way.
        reason = TORCH.unsupported_reason(cell.axes)
        if reason:
            raise SkipCell(reason)
        set_fp32_exact()
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
