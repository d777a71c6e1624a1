"""A cell: one point of the matrix, fully resolved, JSON-serializable so the worker can receive it.

A cell holds typed, frozen configs (Workload with its ModelRef and corpus, Measurement, Optimizer,
Launch); `Cell.to_dict()` is the plain dict records store and the content hash is computed from, so
the dict's keys and values are part of the record format and must not change.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hlbench.axes import AXES
from hlbench.workloads.corpus import BytesData, DataRef, MarkovData, data_from_dict, from_mapping
from hlbench.workloads.custom import MODELS as CUSTOM_MODELS
from hlbench.workloads.custom import REF_FIELDS as CUSTOM_FIELDS
from hlbench.workloads.gpt import GPTSpec
from hlbench.workloads.llama import LlamaSpec
from hlbench.workloads.lstm import LSTMSpec

HASH_CHARS = 16  # 64 bits of sha256: collisions are irrelevant at suite scale, ids stay readable
# How many workers run a cell and how long one may take change no number a worker measures.
UNHASHED_MEASUREMENT_KEYS = ("repeats", "timeout_s")
FIXED_STEPS = "fixed_steps"
TIME_TO_TARGET = "time_to_target"
# The time-to-target keys of a Measurement: left out of its dict in fixed-steps mode, so fixed-steps
# cells keep the dict (and hash) they had before the mode existed.
QUALITY_MEASUREMENT_KEYS = ("mode", "target_excess_nats", "target_eval_loss", "eval_every_steps")
QUALITY_MEASUREMENT_KEYS += ("max_steps", "max_tokens", "max_time_s", "seeds", "stop_at_target")
SCHEDULE_KEYS = ("lr_schedule", "lr_warmup_steps", "lr_decay_steps", "lr_min_ratio")

# Field order of each model's spec: a ModelRef lists its keys as the spec's `to_dict` does.
SPEC_FIELDS: dict[str, tuple[str, ...]] = {
    model: tuple(f.name for f in dataclasses.fields(spec_type))
    for model, spec_type in (("gpt", GPTSpec), ("lstm", LSTMSpec), ("llama", LlamaSpec))
}
SPEC_FIELDS.update({model: CUSTOM_FIELDS for model in CUSTOM_MODELS})  # custom, hf


@dataclass(frozen=True)
class ModelRef:
    """The model a cell trains: a preset (`model`, `size`), its vocabulary and every architecture
    field of the preset's spec (hlbench.workloads.model_spec turns it back into the spec).

    Fields the model's spec lacks are None (d_embed of a GPT), as are n_head_kept and d_mlp unless a
    structured `shrink` set them; None fields are left out of the dict, as GPTSpec.to_dict does.
    """

    model: str
    size: str
    vocab_size: int
    n_layer: int | None = None
    n_head: int | None = None  # gpt, llama
    d_model: int | None = None  # gpt, llama
    n_positions: int | None = None  # gpt, llama
    n_head_kept: int | None = None  # gpt, llama, after a structured shrink
    d_mlp: int | None = None  # gpt, llama, after a structured shrink
    d_embed: int | None = None  # lstm
    d_hidden: int | None = None  # lstm
    n_kv_head: int | None = None  # llama
    d_ff: int | None = None  # llama
    rope_theta: float | None = None  # llama
    norm_eps: float | None = None  # llama
    tie_embeddings: bool | None = None  # llama
    factory: dict[str, str] | None = None  # custom: framework -> factory reference
    kwargs: dict[str, Any] | None = None  # custom: the factory's keyword arguments
    factory_sha256: dict[str, str] | None = None  # custom: content of each file factory
    architecture: str | None = None  # hf: a transformers class, e.g. LlamaForCausalLM
    config: dict[str, Any] | None = None  # hf: its config keys

    def __post_init__(self) -> None:
        if self.model not in SPEC_FIELDS:
            raise ValueError(f"unknown model {self.model!r}; choose from: {', '.join(SPEC_FIELDS)}")
        own = SPEC_FIELDS[self.model]
        foreign = [
            f.name
            for f in dataclasses.fields(self)
            if f.name not in own and getattr(self, f.name) is not None
        ]
        if foreign:
            raise ValueError(f"ModelRef: a {self.model} spec has no {', '.join(foreign)}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelRef:
        return from_mapping(cls, data)

    def to_dict(self) -> dict[str, Any]:
        values = {name: getattr(self, name) for name in SPEC_FIELDS[self.model]}
        return {name: value for name, value in values.items() if value is not None}


@dataclass(frozen=True)
class Workload:
    """What a cell trains on what: the model, the corpus, and the batch sizes accumulation and
    ranks resolved."""

    name: str
    spec: ModelRef
    data: DataRef
    seq_len: int
    global_batch: int
    micro_batch: int  # per rank when data parallel
    hold: str  # global | micro: which batch size the suite's accumulation axis keeps fixed
    variable_length: bool

    def __post_init__(self) -> None:
        if not isinstance(self.spec, ModelRef):
            object.__setattr__(self, "spec", ModelRef.from_dict(self.spec))
        if not isinstance(self.data, (MarkovData, BytesData)):
            object.__setattr__(self, "data", data_from_dict(self.data))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Workload:
        return from_mapping(cls, data)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "spec": self.spec.to_dict(),
            "data": self.data.to_dict(),
            "seq_len": self.seq_len,
            "global_batch": self.global_batch,
            "micro_batch": self.micro_batch,
            "hold": self.hold,
            "variable_length": self.variable_length,
        }


@dataclass(frozen=True)
class Measurement:
    """How a cell is timed (the suite's `measurement:`; see hlbench.suite.schema)."""

    warmup_steps: int
    steps: int
    windows: int
    repeats: int
    budget_s: float
    timeout_s: float
    eval_batches: int
    # time_to_target: train until the held-out loss reaches the target (hlbench.worker.quality)
    mode: str = FIXED_STEPS
    target_excess_nats: float | None = None  # excess over the corpus's entropy floor
    target_eval_loss: float | None = None  # an absolute eval loss (a corpus without a floor)
    eval_every_steps: int | None = None
    max_steps: int | None = None  # optimizer steps in all, warmup included
    max_tokens: int | None = None
    max_time_s: float | None = None  # training time (warmup and windows), evals excluded
    # initialisation and data-order seeds, one per repeat (Cell.for_repeat); the corpus and the
    # held-out batches keep the cell's `seed`
    seeds: tuple[int, ...] | None = None
    # False: train on to the budget after the target is met, so every cell's final excess loss is
    # measured at the same budget (time to target is still the first eval that met it)
    stop_at_target: bool = True

    def __post_init__(self) -> None:
        if self.seeds is not None:
            object.__setattr__(self, "seeds", tuple(self.seeds))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Measurement:
        return from_mapping(cls, data)

    def to_dict(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if self.seeds is not None:
            values["seeds"] = list(self.seeds)
        if self.stop_at_target:
            del values["stop_at_target"]  # the default: time-to-target cells keep their old dict
        if self.mode == FIXED_STEPS:
            # the fixed-steps dict of old, plus `seeds` only where a suite lists them
            values = {
                k: v
                for k, v in values.items()
                if k not in QUALITY_MEASUREMENT_KEYS or (k == "seeds" and v is not None)
            }
        return values

    def planned_steps(self, tokens_per_step: int) -> int:
        """Time to target: the optimizer steps a cell may run (and draws batches for): warmup,
        then whole evaluation intervals up to the step budget (max_steps, or max_tokens over the
        tokens of one step, rounded up)."""
        budgets = [] if self.max_steps is None else [self.max_steps]
        if self.max_tokens is not None:
            budgets.append(-(-self.max_tokens // tokens_per_step))
        every = self.eval_every_steps or 1
        intervals = max(-(-(min(budgets) - self.warmup_steps) // every), 1)
        return self.warmup_steps + intervals * every

    def step_budget(self, tokens_per_step: int) -> int:
        """Every optimizer step a cell may run: warmup and windows, or time to target's plan."""
        if self.mode == TIME_TO_TARGET:
            return self.planned_steps(tokens_per_step)
        return self.warmup_steps + self.windows * self.steps

    def hashed(self) -> dict[str, Any]:
        """The settings that can change a measured number (not repeats, not the timeout)."""
        return {k: v for k, v in self.to_dict().items() if k not in UNHASHED_MEASUREMENT_KEYS}


@dataclass(frozen=True)
class Optimizer:
    """AdamW's settings (the suite's `optimizer:`)."""

    name: str
    lr: float
    betas: tuple[float, float]
    eps: float
    weight_decay: float
    grad_clip_norm: float | None  # global-norm clipping; None: off
    # the learning-rate schedule (hlbench.techniques.schedule); lr_decay_steps is resolved when
    # cells are made (default: the cell's step budget)
    lr_schedule: str = "constant"
    lr_warmup_steps: int = 0
    lr_decay_steps: int | None = None
    lr_min_ratio: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "betas", tuple(self.betas))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Optimizer:
        return from_mapping(cls, data)

    def to_dict(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if self.lr_schedule == "constant":
            # a constant rate keeps the dict (and the cell hash) it had before schedules existed
            values = {k: v for k, v in values.items() if k not in SCHEDULE_KEYS}
        return {**values, "betas": list(self.betas)}  # a JSON list, as records have always had it


def launch_label(launch: Mapping[str, Any]) -> str:
    """`ddp8` (8 ranks on one node), `ddp4x2` (4 ranks on each of 2 nodes), `multi-worker2`, ...
    Takes a record's `launch` dict (older records may lack `nnodes`)."""
    name = launch["strategy"].replace("_", "-")
    if launch.get("nnodes", 1) > 1:
        return f"{name}{launch['nproc_per_node']}x{launch['nnodes']}"
    return f"{name}{launch['world_size']}"


@dataclass(frozen=True)
class Launch:
    """Data-parallel training over several ranks (hlbench.sweep.launch), resolved for a cell's
    backend. Where the ranks meet (hosts, ports) is not part of it."""

    strategy: str  # ddp | fsdp | mirrored | multi_worker
    world_size: int
    nnodes: int
    nproc_per_node: int

    @property
    def label(self) -> str:
        return launch_label(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Launch:
        return from_mapping(cls, data)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclass(frozen=True)
class Cell:
    # Given dicts (Cell(**record["cell"]), dataclasses.replace(cell, workload={...})), __post_init__
    # converts them to the typed configs.
    workload: Workload
    backend: str
    device: str  # as requested: auto | cpu | cuda[:N]; the worker records what it resolved to
    axes: dict[str, Any]  # precision, accumulation, pruning, ... (hlbench.axes)
    measurement: Measurement
    optimizer: Optimizer
    seed: int
    # resolved settings of the named axis values: {"pruning": {...}, "augmentation": {...}}
    techniques: dict[str, Any] = field(default_factory=dict)
    # None: one process on one device
    launch: Launch | None = None
    # this repeat's initialisation and data-order seed (measurement.seeds[repeat]; Cell.for_repeat);
    # None: `seed`. Not in the hash: the repeat, like the repeat number, is not the cell
    init_seed: int | None = None

    def __post_init__(self) -> None:
        typed: dict[str, Any] = {
            "workload": Workload,
            "measurement": Measurement,
            "optimizer": Optimizer,
        }
        if self.launch is not None:
            typed["launch"] = Launch
        for name, config_type in typed.items():
            value = getattr(self, name)
            if not isinstance(value, config_type):
                object.__setattr__(self, name, config_type.from_dict(value))

    @property
    def id(self) -> str:
        """Readable id, e.g. `gpt-small/torch/fp32/ga4/none`."""
        parts = [self.workload.name, self.backend]
        parts += [axis.short(self.axes[axis.name]) for axis in AXES if axis.name in self.axes]
        if self.launch:  # e.g. .../ddp2: a data-parallel cell never shares an id with a single one
            parts.append(self.launch.label)
        return "/".join(p for p in parts if p)  # an axis may leave its default value out of the id

    @property
    def hash(self) -> str:
        """Content hash of everything that affects the cell's numbers (not the suite's name, not the
        repeat)."""
        content = self.to_dict()
        if self.launch is None:  # single-device cells hash as they did before launchers existed
            del content["launch"]
        content.pop("init_seed", None)  # the seeds list is in the measurement, hashed
        content["measurement"] = self.measurement.hashed()
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:HASH_CHARS]

    def to_dict(self) -> dict[str, Any]:
        return {
            "workload": self.workload.to_dict(),
            "backend": self.backend,
            "device": self.device,
            "axes": copy.deepcopy(self.axes),
            "measurement": self.measurement.to_dict(),
            "optimizer": self.optimizer.to_dict(),
            "seed": self.seed,
            "techniques": copy.deepcopy(self.techniques),
            "launch": None if self.launch is None else self.launch.to_dict(),
            **({} if self.init_seed is None else {"init_seed": self.init_seed}),
        }

    @property
    def train_seed(self) -> int:
        """The seed of the initial weights and the train batches' order (and their augmentation);
        the corpus and the held-out batches always use `seed`."""
        return self.seed if self.init_seed is None else self.init_seed

    def for_repeat(self, repeat: int) -> Cell:
        """The cell as repeat `repeat` runs it: with measurement.seeds, that repeat's seed."""
        seeds = self.measurement.seeds
        if not seeds:
            return self
        return dataclasses.replace(self, init_seed=seeds[repeat % len(seeds)])

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Cell:
        return cls(**data)
