"""Data parallel against one process: each data-parallel cell beside its single-device twin.

The twin is the cell with the same workload, backend, axes and tokens per step whose `parallel` is
"single" (with `hold: micro` a data-parallel cell has W× the global batch, hence no twin: weak
scaling is not what this table shows). Speedup is
the ratio of their tokens/s (medians over ok repeats; both count global tokens), scaling efficiency
the speedup over the world size. Only reports whose records include data-parallel cells get this
section.
"""

from __future__ import annotations

import re
import statistics
from typing import Any

import pandas as pd

from hlbench.reporting import formatting as fmt
from hlbench.reporting.cells import CORE_AXES, variant_axes

HEADERS = [
    "cell",
    "one process (tokens/s)",
    "data parallel (tokens/s)",
    "speedup",
    "efficiency",
    "peak memory vs one process",
]


def world_size(parallel: str) -> int | None:
    """Ranks in a `parallel` label (hlbench.cell.launch_label): ddp8 → 8, ddp4x2 → 8."""
    match = re.search(r"(\d+)(?:x(\d+))?$", str(parallel))
    return int(match.group(1)) * int(match.group(2) or 1) if match else None


def pairs(cells: pd.DataFrame) -> list[tuple[Any, Any]]:
    """(data-parallel cell, its single-device twin or None), in the report's cell order."""
    if "parallel" not in cells:
        return []
    others = [v for v in variant_axes(cells) if v != "parallel"]
    # the same global batch too: with `hold: micro` a data-parallel cell trains W× the rows per step
    key_columns = [
        "workload",
        "backend",
        "tokens_per_step",
        *CORE_AXES,
        *others,
    ]  # global batch × seq len
    single = {
        tuple(str(r[k]) for k in key_columns): r
        for _, r in cells[cells["parallel"] == "single"].iterrows()
    }
    return [
        (r, single.get(tuple(str(r[k]) for k in key_columns)))
        for _, r in cells[cells["parallel"] != "single"].iterrows()
    ]


def speedup(cell: Any, twin: Any) -> float | None:
    if twin is None or fmt.missing(cell["tokens_per_s"]) or fmt.missing(twin["tokens_per_s"]):
        return None
    return float(cell["tokens_per_s"]) / float(twin["tokens_per_s"])


def scaling_rows(cells: pd.DataFrame) -> list[list[str]]:
    rows = []
    for cell, twin in pairs(cells):
        s, world = speedup(cell, twin), world_size(cell["parallel"])
        memory = None
        if (
            twin is not None
            and not fmt.missing(cell["peak_mem_bytes"])
            and not fmt.missing(twin["peak_mem_bytes"])
        ):
            memory = float(cell["peak_mem_bytes"]) / float(twin["peak_mem_bytes"])
        rows.append(
            [
                cell["cell_id"],
                fmt.num(twin["tokens_per_s"]) if twin is not None else "— (no twin)",
                fmt.num(cell["tokens_per_s"]),
                fmt.ratio(s),
                fmt.percent(s / world) if s is not None and world else "—",
                fmt.ratio(memory),
            ]
        )
    return rows


def scaling_findings(cells: pd.DataFrame) -> list[str]:
    """One sentence per (backend, parallel variant): the geometric-mean speedup over its pairs."""
    groups: dict[tuple[str, str], list[float]] = {}
    for cell, twin in pairs(cells):
        s = speedup(cell, twin)
        if s is not None:
            groups.setdefault((str(cell["backend"]), str(cell["parallel"])), []).append(s)
    out = []
    for (backend, parallel), values in sorted(groups.items()):
        geo = statistics.geometric_mean(values)
        world = world_size(parallel) or 1
        spread = (
            f" (range {fmt.ratio(min(values))}–{fmt.ratio(max(values))} over {len(values)} cells)"
            if len(values) > 1
            else ""
        )
        out.append(
            f"Data parallel {parallel} in {fmt.backend_name(backend)}: {fmt.ratio(geo)} the "
            f"tokens/s of one process{spread}, a scaling efficiency of {fmt.percent(geo / world)}."
        )
    return out
