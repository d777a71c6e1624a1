"""Report plots: PNG files with deterministic names, drawn with matplotlib's Agg backend.

Each function draws one figure (a panel per workload) and returns its file name, or returns None
when the records hold no data for it; the markdown then says what is missing instead of linking
nothing. Curves and bars are capped at MAX_SERIES per panel, chosen in the cells' fixed order
(baselines first).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hlbench.reporting import formatting as fmt
from hlbench.reporting.cells import BASELINE_AXES

MAX_SERIES = 12
PNG_METADATA = {"Software": None}  # no matplotlib version stamp: the same data gives the same bytes
# A fixed place: loc="best" searches every line's points, slow with many series.
LEGEND_LOC = "upper right"


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (no display), imported on first use."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _panels(workloads: list[str], title: str, draw: Callable[[Any, str], None], path: Path) -> str:
    plt = pyplot()
    height_in = 3.2 * len(workloads)
    fig, axes = plt.subplots(len(workloads), 1, figsize=(7.5, height_in), squeeze=False)
    for ax, workload in zip(axes[:, 0], workloads):
        draw(ax, workload)
        ax.set_title(f"{workload}: {title}", fontsize=10)
        ax.grid(True, alpha=0.3)
    # fixed margins instead of tight_layout, which costs a full extra draw per figure
    fig.subplots_adjust(
        left=0.11, right=0.98, bottom=0.5 / height_in + 0.02, top=1 - 0.35 / height_in, hspace=0.45
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80, metadata=PNG_METADATA)
    plt.close(fig)
    return path.name


def _ok(cells: pd.DataFrame) -> pd.DataFrame:
    return cells[cells["n_ok"] > 0]


def throughput_and_memory(cells: pd.DataFrame, out_dir: Path) -> list[str]:
    """Bars per precision, grouped by backend, at 1 accumulation step and no pruning."""
    base = _ok(cells)
    base = base[
        (base["accumulation"] == BASELINE_AXES["accumulation"])
        & (base["pruning"] == BASELINE_AXES["pruning"])
    ]
    if base.empty:
        return []
    workloads = sorted(set(base["workload"]))
    names = []
    for column, label, scale, file in (
        ("tokens_per_s", "tokens/s", 1.0, "throughput.png"),
        ("peak_mem_bytes", "peak memory (MiB)", 2**-20, "peak-memory.png"),
    ):

        def draw(
            ax: Any, workload: str, column: str = column, label: str = label, scale: float = scale
        ) -> None:
            rows = base[base["workload"] == workload]
            precisions = list(dict.fromkeys(rows["precision"]))  # already in precision order
            backends = sorted(set(rows["backend"]))
            width = 0.8 / max(len(backends), 1)
            for i, backend in enumerate(backends):
                b = (
                    rows[rows["backend"] == backend]
                    .drop_duplicates("precision")
                    .set_index("precision")
                )
                values = [float(b[column].get(p, np.nan) or np.nan) * scale for p in precisions]
                sources = sorted({fmt.memory_source(s) for s in b["peak_mem_source"].dropna()})
                legend = fmt.backend_name(backend) + (
                    f" ({', '.join(sources)})" if column == "peak_mem_bytes" else ""
                )
                ax.bar(np.arange(len(precisions)) + i * width, values, width, label=legend)
            ax.set_xticks(np.arange(len(precisions)) + width * (len(backends) - 1) / 2, precisions)
            ax.set_ylabel(label)
            ax.legend(fontsize=8, loc=LEGEND_LOC)

        names.append(
            _panels(workloads, f"{label} per precision (1 step, no pruning)", draw, out_dir / file)
        )
    return names


def memory_over_time(cells: pd.DataFrame, out_dir: Path) -> str | None:
    rows = _ok(cells)
    rows = rows[rows["telemetry"].map(len) > 0]
    if rows.empty:
        return None

    def draw(ax: Any, workload: str) -> None:
        for _, c in rows[rows["workload"] == workload].head(MAX_SERIES).iterrows():
            repeat, t, mem = c["telemetry"][0]
            ax.plot(t, mem / 2**20, label=f"{c['cell_id']} #{repeat}")
        ax.set_xlabel("time (s)")
        ax.set_ylabel("memory (MiB)")
        ax.legend(fontsize=7, loc=LEGEND_LOC)

    return _panels(
        sorted(set(rows["workload"])),
        "memory over time (telemetry samples)",
        draw,
        out_dir / "memory-over-time.png",
    )


def loss_curves(cells: pd.DataFrame, out_dir: Path) -> str | None:
    rows = _ok(cells)
    rows = rows[rows["loss_curve_nats"].map(len) > 0]
    if rows.empty:
        return None

    def draw(ax: Any, workload: str) -> None:
        for _, c in rows[rows["workload"] == workload].head(MAX_SERIES).iterrows():
            ax.plot(
                np.arange(len(c["loss_curve_nats"])),
                c["loss_curve_nats"],
                label=c["cell_id"],
                linewidth=1,
            )
        ax.set_xlabel("step (warmup included)")
        ax.set_ylabel("train loss (nats/token)")
        ax.legend(fontsize=7, loc=LEGEND_LOC)

    return _panels(
        sorted(set(rows["workload"])), "training loss", draw, out_dir / "loss-curves.png"
    )


def sparsity_vs_loss(cells: pd.DataFrame, out_dir: Path) -> str | None:
    rows = _ok(cells)
    # an unpruned cell is 0% sparse by definition; pruned cells must report what they achieved
    sparsity = rows["sparsity"].where(
        rows["sparsity"].notna(), rows["pruning"].map(lambda p: 0.0 if p == "none" else np.nan)
    )
    rows = rows.assign(_sparsity=sparsity)
    rows = rows[rows["_sparsity"].notna() & rows["excess_eval_loss_nats"].notna()]
    if not (rows["_sparsity"] > 0).any():
        return None

    def draw(ax: Any, workload: str) -> None:
        w = rows[rows["workload"] == workload]
        for method in list(dict.fromkeys(w["pruning"])):
            m = w[w["pruning"] == method]
            ax.scatter(m["_sparsity"] * 100, m["excess_eval_loss_nats"], label=str(method))
        ax.set_xlabel("achieved sparsity (%)")
        ax.set_ylabel("excess eval loss (nats)")
        ax.legend(fontsize=8, loc=LEGEND_LOC)

    return _panels(
        sorted(set(rows["workload"])),
        "sparsity vs excess loss",
        draw,
        out_dir / "sparsity-vs-loss.png",
    )


def accumulation_vs_memory(cells: pd.DataFrame, out_dir: Path) -> str | None:
    rows = _ok(cells)
    rows = rows[(rows["pruning"] == "none") & rows["peak_mem_bytes"].notna()]
    if rows["accumulation"].nunique() < 2:
        return None

    def draw(ax: Any, workload: str) -> None:
        w = rows[rows["workload"] == workload]
        series = list(dict.fromkeys(zip(w["backend"], w["precision"])))[:MAX_SERIES]
        for backend, precision in series:
            s = w[(w["backend"] == backend) & (w["precision"] == precision)].sort_values(
                "accumulation"
            )
            source = ", ".join(
                sorted({fmt.memory_source(x) for x in s["peak_mem_source"].dropna()})
            )
            ax.plot(
                s["accumulation"],
                s["peak_mem_bytes"] / 2**20,
                marker="o",
                label=f"{fmt.backend_name(backend)} {precision} ({source})",
            )
        ax.set_xscale("log", base=2)
        ax.set_xlabel("accumulation steps")
        ax.set_ylabel("peak memory (MiB)")
        ax.legend(fontsize=7, loc=LEGEND_LOC)

    return _panels(
        sorted(set(rows["workload"])),
        "accumulation steps vs peak memory",
        draw,
        out_dir / "accumulation-vs-memory.png",
    )
