"""What a report shows, computed once from the records (`analyse`), and the report's sections as
markdown (`sections`): the markdown report writes them as they are, the HTML report converts them
(hlbench.reporting.html), so both forms say the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hlbench.reporting.tolerance import DEFAULT_TOLERANCE_NATS


@dataclass(frozen=True)
class Analysis:
    """Everything a report shows, computed once from the records (both report forms read it)."""

    df: Any  # pandas.DataFrame: one row per (cell, repeat)
    parity: Any  # pandas.DataFrame: one row per parity check
    cells: Any  # pandas.DataFrame: one row per cell (hlbench.reporting.cells)
    files: list[str]
    skipped: tuple[str, ...]
    effects: list[Any]
    notes: list[str]
    ratios: list[Any]
    fronts: list[Any]
    warnings: tuple[str, ...] = ()  # what the shards of a sharded run lack or repeat


def analyse(paths: Sequence[Path], tolerance_nats: float = DEFAULT_TOLERANCE_NATS) -> Analysis:
    """Load the records and compute cells, effects, framework ratios and frontiers."""
    from hlbench.reporting.cells import summarize
    from hlbench.reporting.effects import baseline_effects, framework_ratios
    from hlbench.reporting.frontier import frontiers
    from hlbench.reporting.quality import summarize_targets
    from hlbench.results import load_all

    results = load_all(paths)
    df, parity = results.cells, results.parity
    if df.empty:
        import pandas as pd

        from hlbench.results import BASE_COLUMNS

        df = pd.DataFrame(columns=BASE_COLUMNS)
    cells = summarize(df) if len(df) else _empty_cells()
    effects, notes = baseline_effects(cells)
    return Analysis(
        df,
        parity,
        cells,
        [p.name for p in results.files],
        results.skipped,
        effects,
        notes,
        framework_ratios(cells),
        frontiers(cells, tolerance_nats, summarize_targets(df)),
        tuple(results.warnings),
    )


# A plot in the report: (title, file name or figure key, or None; why it is missing; how to read it)
PlotLink = tuple[str, "str | None", str, str]


def sections(
    a: Analysis,
    links: list[PlotLink],
    profile_plot: str | None,
    plot_dir: str,
    quality_plots: Sequence[tuple[str, str, str]] = (),
) -> str:
    """The report as markdown; `links`, `profile_plot` and `quality_plots` (the eval curves of
    time-to-target records: title, name, how to read it) name the plots under `plot_dir`."""
    from hlbench.reporting import markdown, quality, relative
    from hlbench.reporting.findings import findings
    from hlbench.reporting.targetfindings import target_findings

    said = [*findings(a.cells, a.effects, a.ratios, a.parity, a.fronts), *target_findings(a.df)]
    lines = [
        *markdown.header(a.df, a.parity, a.cells, a.files, a.skipped, a.warnings),
        *markdown.findings(said),
        *markdown.frontier(a.fronts, a.cells),
        *markdown.matrix(a.cells),
        *quality.time_to_target(a.df, quality_plots, plot_dir),
        *quality.health(a.df),
        *relative.effects(a.effects, a.notes),
        *relative.frameworks(a.ratios, a.cells, a.parity),
        *relative.scaling(a.cells),
        *markdown.off_the_clock(a.df),
        *markdown.failures(a.df, list(a.cells["cell_id"])),
        *markdown.stability(a.cells),
        *markdown.profiling(a.df, profile_plot, plot_dir),
        *markdown.plots(links, plot_dir),
    ]
    return "\n".join(lines).rstrip("\n") + "\n"


def _empty_cells():  # type: ignore[no-untyped-def]
    import pandas as pd

    return pd.DataFrame(
        columns=[
            "cell_id",
            "workload",
            "backend",
            "n_ok",
            "failed",
            "skipped",
            "tokens_per_s",
            "excess_eval_loss_nats",
            "precision",
            "accumulation",
            "pruning",
            "device",
            "device_name",
            "peak_mem_source",
            "window_cv",
            "steps_measured",
            "budget_hit",
            "throttled",
        ]
    )
