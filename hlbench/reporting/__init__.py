"""Reports from records files: `write_report(paths, out)`, markdown with PNG plots (out.md) or one
HTML page with interactive plots (out.html).

Modules, one idea each: `cells` (per-cell statistics), `stats` (bootstrap intervals), `effects`
(against the baseline and across frameworks), `frontier` (what to train with), `findings` (computed
sentences), `analysis` (all of these at once, and the sections in order), `plotdata`/`plotseries`
(what each plot shows), `plots` (PNGs), `interactive` (plotly figures), `html` (the HTML page),
`markdown` (the sections of absolute figures and checks), `relative` (the sections of relative
figures: effects, frameworks and parity, scaling), `quality` (time to target over seeds,
training health), `evalcurves` (their eval-loss curves), `targetfindings` (their sentences against
the baseline twin), `formatting` (fixed number formats), `tables`
(the `table` command's pivots and exports). pandas, matplotlib and plotly load on first use, never
at `import hlbench`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hlbench.reporting.analysis import Analysis, PlotLink, analyse, sections
from hlbench.reporting.tolerance import DEFAULT_TOLERANCE_NATS

__all__ = ["Analysis", "analyse", "render", "sections", "write_report"]


def render(
    paths: Sequence[Path],
    out_md: Path,
    tolerance_nats: float = DEFAULT_TOLERANCE_NATS,
    draw_plots: bool = True,
) -> str:
    """The report's markdown; plots (when drawn) go to `<out_md stem>_plots/` beside it."""
    a = analyse(paths, tolerance_nats)
    plot_dir = f"{out_md.stem}_plots"
    links = _draw(a, out_md.parent / plot_dir) if draw_plots and len(a.cells) else []
    profile_plot = _profile_plot(a.df, out_md.parent / plot_dir) if draw_plots else None
    curves = _eval_curves(a.df, out_md.parent / plot_dir) if draw_plots else []
    return sections(a, links, profile_plot, plot_dir, curves)


def _draw(a: Analysis, out_dir: Path) -> list[PlotLink]:
    # Every plot is listed whether or not it has data, so the markdown says what is missing.
    from hlbench.reporting import plots
    from hlbench.reporting.plotseries import catalogue

    return [
        (title, plots.draw(plot, out_dir) if plot else None, reason, plot.note if plot else "")
        for title, plot, reason in catalogue(a.cells, a.fronts)
    ]


def _eval_curves(df, out_dir: Path) -> list[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    from hlbench.reporting import plots
    from hlbench.reporting.evalcurves import TITLES, eval_curve_plots

    return [(TITLES[p.key], plots.draw(p, out_dir), p.note) for p in eval_curve_plots(df)]


def _profile_plot(df, out_dir: Path) -> str | None:  # type: ignore[no-untyped-def]
    from hlbench.reporting.profiling import profiled, stacked_phases

    cells = profiled(df)
    return stacked_phases(cells, out_dir) if len(cells) else None


def write_report(
    paths: list[Path], out_md: Path, tolerance_nats: float = DEFAULT_TOLERANCE_NATS
) -> Path:
    """Write the report, its form picked by the suffix: markdown with its plots beside it (.md), or
    one self-contained HTML page with interactive plots (.html, needs the `html` extra); returns
    the path written."""
    out_md = Path(out_md)
    if out_md.suffix == ".html":
        from hlbench.reporting.html import write_html

        return write_html([Path(p) for p in paths], out_md, tolerance_nats)
    out_md.parent.mkdir(parents=True, exist_ok=True)
    text = render([Path(p) for p in paths], out_md, tolerance_nats)
    out_md.write_text(text, encoding="utf-8")
    return out_md
