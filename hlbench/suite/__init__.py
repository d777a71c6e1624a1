"""Suite files: strict schema, validation before anything runs, and expansion into cells.

The schema is pydantic models with `extra="forbid"` and strict types, so an unknown key, a wrong type or
a value out of range is rejected with the key path. Checks that need the workload specs (sizes,
sequence length vs context, batch divisibility, data files) run in `load_suite` too: a suite that
loads is a suite whose every cell can be attempted.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hlbench import workloads
from hlbench.axes import AUGMENTATION_METHODS, AXIS_NAMES, PRECISIONS, PRUNING_METHODS
from hlbench.backends import registry
from hlbench.cell import Cell
from hlbench.data import make_corpus
from hlbench.errors import UsageError
from hlbench.suite.yamlio import load_yaml

DEFAULT_SEQ_LEN = 128  # for models without a context limit (LSTM)
PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]


class _Strict(BaseModel):
    # strict: no "4" -> 4 coercion; a suite says what it means. Ints are still accepted for floats.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class MarkovData(_Strict):
    kind: Literal["markov"]
    vocab: PositiveInt | None = Field(None, description="chain states; default: the model's vocabulary")
    branching: PositiveInt = Field(8, description="successors per state (sparsity of the chain)")


class BytesData(_Strict):
    kind: Literal["bytes"]
    path: str = Field(description="local text file; relative paths are relative to the suite file")


DataConfig = Annotated[Union[MarkovData, BytesData], Field(discriminator="kind")]


class WorkloadConfig(_Strict):
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9._-]+$", description="default: MODEL-SIZE")
    model: Literal["gpt", "lstm"]
    size: str = Field(description="a preset of the model, e.g. tiny, small, gpt2-124m")
    vocab_size: PositiveInt | None = Field(None, description="override the preset's vocabulary")
    seq_len: PositiveInt | None = Field(None, description="default: the model's context (GPT) or 128")
    batch_size: PositiveInt = Field(8, description="sequences per optimizer step (hold: global) or per micro-batch")
    hold: Literal["global", "micro"] = Field("global", description="which batch size accumulation keeps fixed")
    variable_length: bool = Field(False, description="random sequence lengths, padded; padding is not trained on")
    data: DataConfig = Field(default_factory=lambda: MarkovData(kind="markov"))

    @property
    def display_name(self) -> str:
        return self.name or f"{self.model}-{self.size}"


class Axes(_Strict):
    precision: list[Literal[PRECISIONS]] = Field(["fp32"], min_length=1)  # type: ignore[valid-type]
    accumulation: list[PositiveInt] = Field([1], min_length=1)
    # names: a method (none, magnitude, structured, 2:4) or a variant defined in the suite's `pruning:`
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


class Measurement(_Strict):
    warmup_steps: PositiveInt = Field(3, description="optimizer steps timed as startup (the first included)")
    steps: PositiveInt = Field(10, description="optimizer steps per measured window")
    windows: PositiveInt = Field(3, description="measured windows per worker")
    repeats: PositiveInt = Field(1, description="fresh worker processes per cell, one record each")
    budget_s: PositiveFloat = Field(300.0, description="measured time per cell; past it the windows stop early")
    timeout_s: PositiveFloat = Field(1800.0, description="wall time per worker; past it the worker is killed")
    eval_batches: Annotated[int, Field(ge=0)] = Field(4, description="held-out batches for the eval loss")


class Optimizer(_Strict):
    name: Literal["adamw"] = "adamw"
    lr: PositiveFloat = 3e-4
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = (0.9, 0.95)
    eps: PositiveFloat = 1e-8
    weight_decay: Annotated[float, Field(ge=0)] = 0.1
    grad_clip_norm: PositiveFloat | None = Field(1.0, description="global-norm clipping; null disables")

    @field_validator("betas", mode="before")
    @classmethod
    def _list_to_tuple(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value


ExcludeValue = Union[bool, str, int, list[Union[bool, str, int]]]


class Pruning(_Strict):
    """A named pruning setting (suite key `pruning: {NAME: {...}}`); see hlbench.techniques.pruning."""

    method: Literal[PRUNING_METHODS] | None = None  # type: ignore[valid-type]  # default: the name
    sparsity: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.5
    schedule: Literal["oneshot", "gradual"] = "oneshot"
    at: Literal["init", "after_warmup"] = "init"
    start_step: Annotated[int, Field(ge=0)] = 0
    end_step: Annotated[int, Field(ge=0)] = 0
    every_steps: PositiveInt = 1
    shrink: bool = False
    sparse_kernels: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> "Pruning":
        method = self.method
        if method == "none" and self.model_fields_set - {"method"}:
            raise ValueError("method none takes no settings")
        if self.shrink and method != "structured":
            raise ValueError(f"shrink applies to structured pruning only (method is {method})")
        if self.sparse_kernels and method != "2:4":
            raise ValueError(f"sparse_kernels applies to 2:4 pruning only (method is {method})")
        if method == "2:4" and "sparsity" in self.model_fields_set:
            raise ValueError("2:4 has a fixed sparsity of 50%; remove `sparsity`")
        if method == "2:4" and self.schedule != "oneshot":
            raise ValueError("2:4 is oneshot only")
        if self.schedule == "gradual" and self.end_step <= self.start_step:
            raise ValueError(f"gradual: end_step ({self.end_step}) must be after start_step ({self.start_step})")
        if self.schedule == "oneshot" and self.model_fields_set & {"start_step", "end_step", "every_steps"}:
            raise ValueError("start_step, end_step and every_steps belong to schedule: gradual")
        return self


class Augmentation(_Strict):
    """A named augmentation setting (suite key `augmentation: {NAME: {...}}`); see hlbench.techniques.augment."""

    method: Literal[AUGMENTATION_METHODS] | None = None  # type: ignore[valid-type]  # default: the name
    rate: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.1
    mask_token: Annotated[int, Field(ge=0)] | None = None
    span_mean: Annotated[float, Field(ge=1.0)] = 3.0

    @model_validator(mode="after")
    def _consistent(self) -> "Augmentation":
        if self.mask_token is not None and self.method != "token_mask":
            raise ValueError("mask_token applies to token_mask only")
        if "span_mean" in self.model_fields_set and self.method != "span_delete":
            raise ValueError("span_mean applies to span_delete only")
        return self


class Telemetry(_Strict):
    enabled: bool = Field(True, description="sample NVML (GPUs) and the host beside each worker")
    interval_s: Annotated[float, Field(ge=0.01, le=10.0)] = Field(0.1, description="seconds between samples")


class Launcher(_Strict):
    """Data-parallel training of every cell over several ranks (hlbench.run.launch): PyTorch cells through
    torchrun (torch.distributed.run) with DDP or FSDP, TensorFlow cells through tf.distribute. The
    batch a workload names keeps its meaning: with `hold: global` it is the global batch, split over
    world_size × accumulation micro-batches; with `hold: micro` each rank's micro-batch."""

    nproc_per_node: PositiveInt = Field(description="ranks per node: one per GPU (torch processes; TF replicas "
                                                    "or worker processes)")
    nnodes: PositiveInt = Field(1, description="machines; run the same command on each with --node-rank")
    hosts: list[str] | None = Field(None, min_length=1, description="one address per node, node 0 first; "
                                                                     "default [localhost] (nnodes 1)")
    port: Annotated[int, Field(ge=1024, le=65000)] = Field(
        29500, description="torch's rendezvous on hosts[0]; TF multi_worker ranks listen on port+1+local rank")
    rdzv_backend: Literal["static", "c10d"] = Field("static", description="torchrun's rendezvous")
    torch: Literal["ddp", "fsdp"] = Field("ddp", description="DistributedDataParallel or FSDP2 (fully_shard)")
    tf: Literal["mirrored", "multi_worker"] | None = Field(
        None, description="MirroredStrategy (one process, all its devices) or MultiWorkerMirroredStrategy "
                          "(one process per rank, TF_CONFIG); default: mirrored on one node, else multi_worker")

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes

    @model_validator(mode="after")
    def _consistent(self) -> "Launcher":
        if self.hosts is None and self.nnodes > 1:
            raise ValueError(f"hosts: {self.nnodes} nodes need their {self.nnodes} addresses, node 0 first")
        if self.hosts is not None and len(self.hosts) != self.nnodes:
            raise ValueError(f"hosts: {len(self.hosts)} address(es) for nnodes {self.nnodes}")
        if self.tf == "mirrored" and self.nnodes > 1:
            raise ValueError("tf: mirrored runs in one process on one machine; use multi_worker for several nodes")
        return self

    def for_backend(self, backend: str) -> dict[str, Any] | None:
        """The cell's `launch` for a backend (None: the backend has no data-parallel launcher)."""
        tf = self.tf or ("mirrored" if self.nnodes == 1 else "multi_worker")
        strategy = {"torch": self.torch, "tf": tf}.get(backend)
        if strategy is None:
            return None
        return {"strategy": strategy, "world_size": self.world_size, "nnodes": self.nnodes,
                "nproc_per_node": self.nproc_per_node}


class SuiteConfig(_Strict):
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9._-]+$", description="default: the file's stem")
    description: str | None = None
    seed: Annotated[int, Field(ge=0)] = 0
    device: str = Field("auto", description="auto | cpu | cuda[:N]")
    backends: list[str] = Field(min_length=1)
    workloads: list[WorkloadConfig] = Field(min_length=1)
    axes: Axes = Field(default_factory=Axes)
    exclude: list[dict[Literal["workload", "backend", *AXIS_NAMES], ExcludeValue]] = []  # type: ignore[misc]
    measurement: Measurement = Field(default_factory=Measurement)
    optimizer: Optimizer = Field(default_factory=Optimizer)
    telemetry: Telemetry = Field(default_factory=Telemetry)  # how figures are observed, not what is run: not in cell hashes
    # a profiling pass per cell after its measured windows (hlbench.profiling): not in cell hashes either
    profile: bool = Field(False, description="phase breakdown and framework profiler traces per cell")
    launcher: Launcher | None = Field(None, description="data-parallel ranks per cell; default: one device")
    pruning: dict[str, dict[str, Any]] = {}  # NAME -> Pruning settings, for the pruning axis
    augmentation: dict[str, dict[str, Any]] = {}  # NAME -> Augmentation settings, for the augmentation axis

    @field_validator("device")
    @classmethod
    def _device(cls, device: str) -> str:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
            raise ValueError(f"expected auto | cpu | cuda[:N], got {device!r}")
        return device

    @field_validator("backends")
    @classmethod
    def _known_backends(cls, names: list[str]) -> list[str]:
        known = registry()
        for name in names:
            if name not in known:
                raise ValueError(f"unknown backend {name!r}; choose from: {', '.join(sorted(known))}")
        if len(set(names)) != len(names):
            raise ValueError("a backend is listed twice")
        return names

    @model_validator(mode="after")
    def _launcher_fits(self) -> "SuiteConfig":
        if self.launcher is None:
            return self
        if re.fullmatch(r"cuda:\d+", self.device):
            raise ValueError(f"device: {self.device!r} pins one GPU, but with a launcher each rank uses the GPU of "
                             "its local rank; use auto or cuda")
        for name in self.backends:
            if self.launcher.for_backend(name) is None:
                raise ValueError(f"launcher: backend {name!r} has no data-parallel launcher (torch and tf do)")
        return self

    @model_validator(mode="after")
    def _unique_workload_names(self) -> "SuiteConfig":
        names = [w.display_name for w in self.workloads]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"workloads: two workloads are named {dupes[0]!r}; give them distinct `name`s")
        return self


class Suite:
    """A validated suite: its config, where it came from, and its cells."""

    def __init__(self, config: SuiteConfig, path: Path, sha256: str, cells: list[Cell]) -> None:
        self.config = config
        self.path = path
        self.sha256 = sha256
        self.cells = cells

    @property
    def name(self) -> str:
        return self.config.name or self.path.stem


def load_suite(path: str | Path) -> Suite:
    """Load, validate and expand a suite file; any problem raises UsageError (one line)."""
    path = Path(path)
    raw = load_yaml(path)
    return suite_from_mapping(raw, path, hashlib.sha256(path.read_bytes()).hexdigest())


def suite_from_mapping(raw: Any, path: Path, sha256: str) -> Suite:
    """Validate and expand an already-parsed suite (`path` names it in errors and anchors data paths)."""
    if not isinstance(raw, dict):
        raise UsageError(f"{path}: expected a mapping of suite keys at the top level")
    try:
        config = SuiteConfig.model_validate(raw)
    except ValidationError as exc:
        raise UsageError(f"{path}: {_first_error(exc)}") from None
    techniques = _resolve_techniques(path, config)
    specs = [_workload_spec(path, i, w) for i, w in enumerate(config.workloads)]
    data = [_resolve_data(path, i, w, spec) for i, (w, spec) in enumerate(zip(config.workloads, specs))]
    _check_exclude(path, config)
    cells = _expand(path, config, specs, data, techniques)
    return Suite(config, path, sha256, cells)


def _resolve_techniques(path: Path, config: SuiteConfig) -> dict[str, dict[str, dict[str, Any]]]:
    """Axis value name -> full settings, for pruning and augmentation; unknown names and bad settings
    are one-line errors naming the key."""
    resolved: dict[str, dict[str, dict[str, Any]]] = {}
    for axis, model, builtins in (("pruning", Pruning, PRUNING_METHODS),
                                  ("augmentation", Augmentation, AUGMENTATION_METHODS)):
        defined: dict[str, dict[str, Any]] = getattr(config, axis)
        settings = {}
        for name in sorted(set(getattr(config.axes, axis)) | set(defined)):
            raw = dict(defined.get(name, {}))
            if name not in builtins and "method" not in raw:
                where = f"{axis}.{name}" if name in defined else f"axes.{axis}"
                raise UsageError(f"{path}: {where}: {name!r} is neither a method ({', '.join(builtins)}) nor "
                                 f"defined with a `method` under `{axis}:`")
            raw.setdefault("method", name)
            try:
                value = model.model_validate(raw)
            except ValidationError as exc:
                detail = _first_error(exc)
                raise UsageError(f"{path}: {axis}.{name}" + ("" if detail.startswith("<top>") else ".")
                                 + detail.removeprefix("<top>")) from None
            # "none" is just that: no settings, so every un-pruned, un-augmented cell hashes alike
            settings[name] = {"method": "none"} if value.method == "none" else value.model_dump()
        resolved[axis] = settings
    return resolved


def _first_error(exc: ValidationError) -> str:
    errors = exc.errors()
    err = errors[0]
    # Drop pydantic's union-branch labels (e.g. 'markov', 'list[...]') so the path reads as the YAML does.
    loc = ".".join(str(p) for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p in ("markov", "bytes"))))
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    elif err["type"] == "missing":
        msg = "required key is missing"
    elif err["type"] == "string_pattern_mismatch":
        msg = f"expected letters, digits, '.', '_' or '-' (got {err['input']!r})"
    elif err["type"] != "value_error":
        msg = f"{msg} (got {err['input']!r})"
    more = f" (+{len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return f"{loc or '<top>'}: {msg}{more}"


def _seq_len(w: WorkloadConfig, spec: workloads.ModelSpec) -> int:
    return w.seq_len or spec.context or DEFAULT_SEQ_LEN


def _workload_spec(path: Path, index: int, w: WorkloadConfig) -> workloads.ModelSpec:
    key = f"{path}: workloads.{index}"
    try:
        spec = workloads.get_spec(w.model, w.size, w.vocab_size)
    except ValueError as exc:
        raise UsageError(f"{key}.size: {exc}") from None
    seq_len = _seq_len(w, spec)
    if spec.context is not None and seq_len > spec.context:
        raise UsageError(f"{key}.seq_len: {seq_len} exceeds the context of {w.model}-{w.size} ({spec.context})")
    if isinstance(w.data, MarkovData) and w.data.vocab and w.data.vocab > spec.vocab_size:
        raise UsageError(
            f"{key}.data.vocab: {w.data.vocab} symbols exceed the model's vocabulary ({spec.vocab_size})"
        )
    if isinstance(w.data, BytesData) and spec.vocab_size < 256:
        raise UsageError(f"{key}.vocab_size: a byte corpus needs a vocabulary of at least 256")
    return spec


def _resolve_data(path: Path, index: int, w: WorkloadConfig, spec: workloads.ModelSpec) -> dict[str, Any]:
    key = f"{path}: workloads.{index}.data"
    if isinstance(w.data, BytesData):
        file = (path.parent / w.data.path).resolve()
        if not file.is_file():
            raise UsageError(f"{key}.path: no such file: {file}")
        data = {"kind": "bytes", "path": str(file)}
    else:
        data = {"kind": "markov", "vocab": w.data.vocab or spec.vocab_size, "branching": w.data.branching}
    try:  # the corpus checks its own parameters (and a byte file's size against seq_len)
        make_corpus(data, seed=0).check_seq_len(_seq_len(w, spec))
    except ValueError as exc:
        raise UsageError(f"{key}: {exc}") from None
    if data["kind"] == "bytes":  # the file's content affects the numbers, so it is part of the cell's hash
        data["sha256"] = hashlib.sha256(file.read_bytes()).hexdigest()
    return data


def _check_exclude(path: Path, config: SuiteConfig) -> None:
    """An exclusion naming a value that is not in the matrix is a typo that would silently do nothing."""
    declared: dict[str, set[Any]] = {
        "workload": {w.display_name for w in config.workloads},
        "backend": set(config.backends),
        **{axis: set(getattr(config.axes, axis)) for axis in AXIS_NAMES},
    }
    for i, rule in enumerate(config.exclude):
        if not rule:
            raise UsageError(f"{path}: exclude.{i}: an empty rule would exclude every cell")
        for key, value in rule.items():
            for v in value if isinstance(value, list) else [value]:
                if v not in declared[key]:
                    choices = ", ".join(sorted(map(str, declared[key])))
                    raise UsageError(f"{path}: exclude.{i}.{key}: {v!r} is not in the suite; choose from: {choices}")


def _excluded(rules: list[dict[str, Any]], values: dict[str, Any]) -> bool:
    def matches(rule: dict[str, Any]) -> bool:
        return all(values[k] in (v if isinstance(v, list) else [v]) for k, v in rule.items())

    return any(matches(rule) for rule in rules)


def _expand(
    path: Path, config: SuiteConfig, specs: list[workloads.ModelSpec], data: list[dict[str, Any]],
    techniques: dict[str, dict[str, dict[str, Any]]],
) -> list[Cell]:
    cells = []
    axis_values = [getattr(config.axes, axis) for axis in AXIS_NAMES]
    for (w, spec, d), backend in itertools.product(zip(config.workloads, specs, data), config.backends):
        for combo in itertools.product(*axis_values):
            axes = dict(zip(AXIS_NAMES, combo))
            if _excluded(config.exclude, {"workload": w.display_name, "backend": backend, **axes}):
                continue
            settings = {axis: techniques[axis][axes[axis]] for axis in ("pruning", "augmentation")}
            cells.append(_make_cell(path, config, w, spec, d, backend, axes, settings))
    if not cells:
        raise UsageError(f"{path}: exclude: the rules exclude every cell of the matrix")
    return cells


def _make_cell(
    path: Path,
    config: SuiteConfig,
    w: WorkloadConfig,
    spec: workloads.ModelSpec,
    data: dict[str, Any],
    backend: str,
    axes: dict[str, Any],
    techniques: dict[str, dict[str, Any]],
) -> Cell:
    k = axes["accumulation"]
    launch = config.launcher.for_backend(backend) if config.launcher else None
    ranks = launch["world_size"] if launch else 1
    if w.hold == "global":
        if w.batch_size % (k * ranks):
            what = f"{k} steps" + (f" × {ranks} ranks" if ranks > 1 else "")
            raise UsageError(
                f"{path}: axes.accumulation: {what} do not divide batch_size {w.batch_size} of workload "
                f"{w.display_name!r} (hold: global needs micro = global / (k × ranks)); exclude the pair or change one"
            )
        global_batch, micro_batch = w.batch_size, w.batch_size // (k * ranks)
    else:
        global_batch, micro_batch = w.batch_size * k * ranks, w.batch_size
    workload = {
        "name": w.display_name,
        "spec": spec.to_dict(),
        "data": data,
        "seq_len": _seq_len(w, spec),
        "global_batch": global_batch,
        "micro_batch": micro_batch,  # per rank when data parallel
        "hold": w.hold,
        "variable_length": w.variable_length,
    }
    return Cell(
        workload=workload,
        backend=backend,
        device=config.device,
        axes=axes,
        measurement=config.measurement.model_dump(),
        optimizer=config.optimizer.model_dump(mode="json"),
        seed=config.seed,
        techniques=techniques,
        launch=launch,
    )
