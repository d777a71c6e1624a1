"""The suite file's schema: strict pydantic models, with every default and range a suite relies on.

`extra="forbid"` and strict types reject an unknown key, a wrong type or a value out of range with
the key path. Checks that need more than one key's value and the workload specs run in
hlbench.suite.load.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from hlbench import workloads
from hlbench.axes import AUGMENTATION_METHODS, AXIS_NAMES, PRECISIONS
from hlbench.backends import registry
from hlbench.cell import Launch
from hlbench.suite.fields import (
    SAFE_NAME,
    PositiveInt,
    StrictModel,
    not_dots,
)
from hlbench.suite.training import Measurement, Optimizer
from hlbench.suite.yamlio import quote

DEFAULT_SEQ_LEN = 128  # for models without a context limit (LSTM)
MAX_VOCAB = 1 << 18  # validation builds the corpus: vocab × branching arrays
EXCLUDE_KEYS = ("workload", "backend", *AXIS_NAMES)


class MarkovDataConfig(StrictModel):
    kind: Literal["markov"]
    vocab: Annotated[int, Field(gt=0, le=MAX_VOCAB)] | None = Field(
        None, description="chain states; default: the model's vocabulary"
    )
    branching: Annotated[int, Field(gt=0, le=256)] = Field(
        8, description="successors per state (sparsity of the chain)"
    )


class BytesDataConfig(StrictModel):
    kind: Literal["bytes"]
    path: str = Field(description="local text file; relative paths are relative to the suite file")


DataConfig = Annotated[MarkovDataConfig | BytesDataConfig, Field(discriminator="kind")]


class WorkloadConfig(StrictModel):
    name: str | None = Field(None, pattern=SAFE_NAME, description="default: MODEL-SIZE")
    model: Literal["gpt", "lstm", "llama", "custom", "hf"]
    size: str | None = Field(None, description="a preset of the model, e.g. tiny, small, gpt2-124m")
    # model custom: "pkg.module:NAME" or "file.py:NAME" (relative to the suite), or one per backend
    factory: str | dict[Literal["torch", "tf"], str] | None = None
    kwargs: dict[str, Any] | None = Field(None, description="custom: the factory's arguments")
    architecture: str | None = Field(
        None, pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,99}$", description="hf: a transformers class"
    )
    config: dict[str, Any] | None = Field(None, description="hf: the architecture's config keys")
    vocab_size: Annotated[int, Field(gt=0, le=MAX_VOCAB)] | None = Field(
        None, description="override the preset's vocabulary"
    )
    seq_len: PositiveInt | None = Field(
        None, description="default: the model's context (GPT) or 128"
    )
    batch_size: PositiveInt = Field(
        8, description="sequences per optimizer step (hold: global) or per micro-batch"
    )
    hold: Literal["global", "micro"] = Field(
        "global", description="which batch size accumulation keeps fixed"
    )
    variable_length: bool = Field(
        False, description="random sequence lengths, padded; padding is not trained on"
    )
    data: DataConfig = Field(default_factory=lambda: MarkovDataConfig(kind="markov"))

    _name = field_validator("name")(not_dots)

    @model_validator(mode="after")
    def _model_keys(self) -> WorkloadConfig:
        own = {"custom": {"factory", "kwargs"}, "hf": {"architecture", "config"}}
        required = {"custom": ("factory", "name", "vocab_size"), "hf": ("architecture",)}
        for key in required.get(self.model, ("size",)):
            if getattr(self, key) is None:
                raise ValueError(f"model {self.model} needs `{key}`")
        for key in ("size", "factory", "kwargs", "architecture", "config"):
            allowed = own.get(self.model, {"size"})
            if key not in allowed and getattr(self, key) is not None:
                raise ValueError(f"`{key}` does not apply to model {self.model}")
        if isinstance(self.factory, dict) and not self.factory:
            raise ValueError("factory: name a factory for torch, tf or both")
        return self

    @property
    def display_name(self) -> str:
        if self.model in ("custom", "hf"):
            return self.name or f"hf-{self.architecture}"
        return self.name or f"{self.model}-{self.size}"

    def seq_len_for(self, spec: workloads.ModelSpec) -> int:
        """The sequence length cells train at: as written, else the model's context, else 128."""
        return self.seq_len or spec.context or DEFAULT_SEQ_LEN


class Axes(StrictModel):
    precision: list[Literal[PRECISIONS]] = Field(["fp32"], min_length=1)  # type: ignore[valid-type]
    accumulation: list[PositiveInt] = Field([1], min_length=1)
    # names: a method (none, magnitude, structured, 2:4) or a variant defined under `pruning:`
    pruning: list[str] = Field(["none"], min_length=1)
    compile: list[bool] = Field([False], min_length=1)
    # names: none, token_replace, token_mask, span_delete, or a variant defined in `augmentation:`
    augmentation: list[str] = Field(["none"], min_length=1)

    @field_validator("precision", "accumulation", "pruning", "compile", "augmentation")
    @classmethod
    def _unique(cls, values: list[Any]) -> list[Any]:
        dupes = sorted({str(v) for v in values if values.count(v) > 1})
        if dupes:
            raise ValueError(f"repeated value(s): {', '.join(dupes)}")
        return values


ExcludeValue = bool | str | int | list[bool | str | int]


class Augmentation(StrictModel):
    """A named augmentation setting (suite key `augmentation: {NAME: {...}}`); see
    hlbench.techniques.augment."""

    method: Literal[AUGMENTATION_METHODS] | None = None  # type: ignore[valid-type]  # default: the name
    rate: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.1
    mask_token: Annotated[int, Field(ge=0, lt=MAX_VOCAB)] | None = None
    span_mean: Annotated[float, Field(ge=1.0, le=1e6)] = 3.0

    @model_validator(mode="after")
    def _consistent(self) -> Augmentation:
        if self.mask_token is not None and self.method != "token_mask":
            raise ValueError("mask_token applies to token_mask only")
        if "span_mean" in self.model_fields_set and self.method != "span_delete":
            raise ValueError("span_mean applies to span_delete only")
        return self


class Telemetry(StrictModel):
    enabled: bool = Field(True, description="sample NVML (GPUs) and the host beside each worker")
    interval_s: Annotated[float, Field(ge=0.01, le=10.0)] = Field(
        0.1, description="seconds between samples"
    )


class Launcher(StrictModel):
    """Data-parallel training of every cell over several ranks (hlbench.sweep.launch): PyTorch cells
    through torchrun (torch.distributed.run) with DDP or FSDP, TensorFlow cells through
    tf.distribute. The batch a workload names keeps its meaning: with `hold: global` it is the
    global batch, split over world_size × accumulation micro-batches; with `hold: micro` each
    rank's micro-batch."""

    nproc_per_node: Annotated[int, Field(gt=0, le=1024)] = Field(
        description="ranks per node: one per GPU (torch processes; TF replicas or worker processes)"
    )
    nnodes: Annotated[int, Field(gt=0, le=1024)] = Field(
        1, description="machines; run the same command on each with --node-rank"
    )
    hosts: list[str] | None = Field(
        None,
        min_length=1,
        description="one address per node, node 0 first; default [localhost] (nnodes 1)",
    )
    port: Annotated[int, Field(ge=1024, le=65000)] = Field(
        29500,
        description="torch's rendezvous on hosts[0]; TF multi_worker ranks listen on "
        "port+1+local rank",
    )
    rdzv_backend: Literal["static", "c10d"] = Field("static", description="torchrun's rendezvous")
    torch: Literal["ddp", "fsdp"] = Field(
        "ddp", description="DistributedDataParallel or FSDP2 (fully_shard)"
    )
    tf: Literal["mirrored", "multi_worker"] | None = Field(
        None,
        description="MirroredStrategy (one process, all its devices) or "
        "MultiWorkerMirroredStrategy (one process per rank, TF_CONFIG); default: mirrored on one "
        "node, else multi_worker",
    )

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes

    @model_validator(mode="after")
    def _consistent(self) -> Launcher:
        if self.hosts is None and self.nnodes > 1:
            raise ValueError(
                f"hosts: {self.nnodes} nodes need their {self.nnodes} addresses, node 0 first"
            )
        if self.hosts is not None and len(self.hosts) != self.nnodes:
            raise ValueError(f"hosts: {len(self.hosts)} address(es) for nnodes {self.nnodes}")
        if self.tf == "mirrored" and self.nnodes > 1:
            raise ValueError(
                "tf: mirrored runs in one process on one machine; use multi_worker for several "
                "nodes"
            )
        return self

    def for_backend(self, backend: str) -> Launch | None:
        """The cell's `launch` for a backend (None: the backend has no data-parallel launcher)."""
        tf = self.tf or ("mirrored" if self.nnodes == 1 else "multi_worker")
        strategy = {"torch": self.torch, "tf": tf}.get(backend)
        if strategy is None:
            return None
        return Launch(strategy, self.world_size, self.nnodes, self.nproc_per_node)


class SuiteConfig(StrictModel):
    name: str | None = Field(None, pattern=SAFE_NAME, description="default: the file's stem")
    description: str | None = None
    seed: Annotated[int, Field(ge=0, lt=1 << 32)] = 0  # what NumPy's seeding accepts
    device: str = Field("auto", description="auto | cpu | cuda[:N]")
    backends: list[str] = Field(min_length=1)
    workloads: list[WorkloadConfig] = Field(min_length=1)
    axes: Axes = Field(default_factory=Axes)
    exclude: list[dict[Literal[EXCLUDE_KEYS], ExcludeValue]] = []  # type: ignore[valid-type]
    measurement: Measurement = Field(default_factory=Measurement)
    optimizer: Optimizer = Field(default_factory=Optimizer)
    # how figures are observed, not what is run: not in cell hashes
    telemetry: Telemetry = Field(default_factory=Telemetry)
    # a profiling pass per cell after its measured windows (hlbench.profiling): not in cell hashes
    profile: bool = Field(
        False, description="phase breakdown and framework profiler traces per cell"
    )
    launcher: Launcher | None = Field(
        None, description="data-parallel ranks per cell; default: one device"
    )
    # NAME -> settings (hlbench.techniques.pruning.PruningConfig), for the pruning axis
    pruning: dict[str, dict[str, Any]] = {}
    # NAME -> Augmentation settings, for the augmentation axis
    augmentation: dict[str, dict[str, Any]] = {}

    _name = field_validator("name")(not_dots)

    @field_validator("device")
    @classmethod
    def _device(cls, device: str) -> str:
        if not re.fullmatch(r"auto|cpu|cuda(:\d{1,4})?", device):
            raise ValueError(f"expected auto | cpu | cuda[:N], got {quote(device)}")
        return device

    @field_validator("backends")
    @classmethod
    def _known_backends(cls, names: list[str]) -> list[str]:
        known = registry()
        for name in names:
            if name not in known:
                raise ValueError(
                    f"unknown backend {quote(name)}; choose from: {', '.join(sorted(known))}"
                )
        if len(set(names)) != len(names):
            raise ValueError("a backend is listed twice")
        return names

    @model_validator(mode="after")
    def _launcher_fits(self) -> SuiteConfig:
        if self.launcher is None:
            return self
        if re.fullmatch(r"cuda:\d+", self.device):
            raise ValueError(
                f"device: {self.device!r} pins one GPU, but with a launcher each rank uses the GPU "
                "of its local rank; use auto or cuda"
            )
        for name in self.backends:
            if self.launcher.for_backend(name) is None:
                raise ValueError(
                    f"launcher: backend {name!r} has no data-parallel launcher (torch and tf do)"
                )
        return self

    @model_validator(mode="after")
    def _unique_workload_names(self) -> SuiteConfig:
        names = [w.display_name for w in self.workloads]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(
                f"workloads: two workloads are named {quote(dupes[0])}; give them distinct `name`s"
            )
        return self
