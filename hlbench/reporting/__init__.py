"""Markdown reports with PNG plots from records files: `write_report(paths, out_md)`.

Modules, one idea each: `cells` (per-cell statistics), `stats` (bootstrap intervals), `effects`
(against the baseline and across frameworks), `frontier` (what to train with), `findings` (computed
sentences), `plots` (PNGs), `markdown` (the sections of absolute figures and checks), `relative`
(the sections of relative figures: effects, frameworks and parity, scaling), `quality` (time to
target over seeds, training health), `formatting` (fixed
number formats), `tables` (the `table` command's pivots and exports). pandas and matplotlib load on
first use, never at `import hlbench`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hlbench.reporting.tolerance import DEFAULT_TOLERANCE_NATS


def render(
    paths: Sequence[Path],
    out_md: Path,
    tolerance_nats: float = DEFAULT_TOLERANCE_NATS,
    draw_plots: bool = True,
) -> str:
    """The report's markdown; plots (when drawn) go to `<out_md stem>_plots/` beside it."""
    from hlbench.reporting import markdown, plots, quality, relative
    from hlbench.reporting.cells import summarize
    from hlbench.reporting.effects import baseline_effects, framework_ratios
    from hlbench.reporting.findings import findings
    from hlbench.reporting.frontier import frontiers
    from hlbench.results import load_all

    results = load_all(paths)
    df, parity = results.cells, results.parity
    if df.empty:
        import pandas as pd

        from hlbench.results import BASE_COLUMNS

        df = pd.DataFrame(columns=BASE_COLUMNS)
    cells = summarize(df) if len(df) else _empty_cells()
    effects, notes = baseline_effects(cells)
    ratios = framework_ratios(cells)
    fronts = frontiers(cells, tolerance_nats)

    plot_dir = f"{out_md.stem}_plots"
    links = _draw(cells, out_md.parent / plot_dir, plots) if draw_plots and len(cells) else []
    profile_plot = _profile_plot(df, out_md.parent / plot_dir) if draw_plots else None
    lines = [
        *markdown.header(df, parity, cells, [p.name for p in results.files], results.skipped),
        *markdown.findings(findings(cells, effects, ratios, parity, fronts)),
        *markdown.frontier(fronts, cells),
        *markdown.matrix(cells),
        *quality.time_to_target(df),
        *quality.health(df),
        *relative.effects(effects, notes),
        *relative.frameworks(ratios, cells, parity),
        *relative.scaling(cells),
        *markdown.off_the_clock(df),
        *markdown.failures(df, list(cells["cell_id"])),
        *markdown.stability(cells),
        *markdown.profiling(df, profile_plot, plot_dir),
        *markdown.plots(links, plot_dir),
    ]
    return "\n".join(lines).rstrip("\n") + "\n"


def _draw(cells, out_dir: Path, plots) -> list[tuple[str, str | None, str]]:  # type: ignore[no-untyped-def]
    # Links are listed whether or not a plot is drawn so the markdown never depends on matplotlib's
    # output.
    names = plots.throughput_and_memory(cells, out_dir)
    return [
        (
            "Throughput per precision",
            names[0] if names else None,
            "no ok cell at 1 accumulation step without pruning",
        ),
        (
            "Peak memory per precision",
            names[1] if names else None,
            "no ok cell at 1 accumulation step without pruning",
        ),
        (
            "Memory over time",
            plots.memory_over_time(cells, out_dir),
            "no telemetry samples in these records",
        ),
        ("Loss curves", plots.loss_curves(cells, out_dir), "no per-step losses in these records"),
        (
            "Sparsity vs excess loss",
            plots.sparsity_vs_loss(cells, out_dir),
            "no pruned cell reports its sparsity",
        ),
        (
            "Accumulation steps vs peak memory",
            plots.accumulation_vs_memory(cells, out_dir),
            "fewer than two accumulation values with a memory figure",
        ),
    ]


def _profile_plot(df, out_dir: Path) -> str | None:  # type: ignore[no-untyped-def]
    from hlbench.reporting.profiling import profiled, stacked_phases

    cells = profiled(df)
    return stacked_phases(cells, out_dir) if len(cells) else None


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


def write_report(
    paths: list[Path], out_md: Path, tolerance_nats: float = DEFAULT_TOLERANCE_NATS
) -> Path:
    """Write the markdown report (and its plots beside it); returns `out_md`."""
    out_md = Path(out_md)
    out_md.parent.mkdir(parents=True, exist_ok=True)
    text = render([Path(p) for p in paths], out_md, tolerance_nats)
    out_md.write_text(text, encoding="utf-8")
    return out_md
