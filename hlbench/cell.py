"""A cell: one point of the matrix, fully resolved, JSON-serializable so the worker can receive it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from hlbench.axes import AXES

HASH_CHARS = 16  # 64 bits of sha256: collisions are irrelevant at suite scale, ids stay readable
# How many workers run a cell and how long one may take change no number a worker measures.
UNHASHED_MEASUREMENT_KEYS = ("repeats", "timeout_s")


def launch_label(launch: dict[str, Any]) -> str:
    """`ddp8` (8 ranks on one node), `ddp4x2` (4 ranks on each of 2 nodes), `multi-worker2`, ..."""
    name = launch["strategy"].replace("_", "-")
    if launch.get("nnodes", 1) > 1:
        return f"{name}{launch['nproc_per_node']}x{launch['nnodes']}"
    return f"{name}{launch['world_size']}"


@dataclass(frozen=True)
class Cell:
    workload: dict[str, Any]  # name, spec (model architecture), data, seq_len, global/micro batch, hold, ...
    backend: str
    device: str  # as requested: auto | cpu | cuda[:N]; the worker records what it resolved to
    axes: dict[str, Any]  # precision, accumulation, pruning, ... (hlbench.axes)
    measurement: dict[str, Any]
    optimizer: dict[str, Any]
    seed: int
    # resolved settings of the named axis values: {"pruning": {...}, "augmentation": {...}}
    techniques: dict[str, Any] = field(default_factory=dict)
    # data-parallel training over several ranks (hlbench.run.launch), resolved for this cell's backend:
    # {"strategy": ddp | fsdp | mirrored | multi_worker, "world_size", "nnodes", "nproc_per_node"};
    # None: one process on one device. Where the ranks meet (hosts, ports) is not part of it.
    launch: dict[str, Any] | None = None

    @property
    def id(self) -> str:
        """Readable id, e.g. `gpt-small/torch/fp32/ga4/none`."""
        parts = [self.workload["name"], self.backend]
        parts += [axis.short(self.axes[axis.name]) for axis in AXES if axis.name in self.axes]
        if self.launch:  # e.g. .../ddp2: a data-parallel cell never shares an id with a single-device one
            parts.append(launch_label(self.launch))
        return "/".join(p for p in parts if p)  # an axis may leave its default value out of the id

    @property
    def hash(self) -> str:
        """Content hash of everything that affects the cell's numbers (not the suite's name, not the repeat)."""
        content = self.to_dict()
        if content["launch"] is None:  # single-device cells hash as they did before launchers existed
            del content["launch"]
        content["measurement"] = {
            k: v for k, v in self.measurement.items() if k not in UNHASHED_MEASUREMENT_KEYS
        }
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:HASH_CHARS]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Cell":
        return cls(**data)
