"""The HTML report: one self-contained page, the markdown report's sections with interactive plots.

The page is the markdown (hlbench.reporting.analysis.sections, so both forms say the same) turned
into HTML by a small converter for the few constructs the report uses (headings, paragraphs, lists,
pipe tables, **bold**, `code`), with each plot's image replaced by its plotly figures
(hlbench.reporting.interactive). plotly.js is embedded once, inline: the page needs no network and
no server. The same records give the same bytes.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hlbench.reporting.tolerance import DEFAULT_TOLERANCE_NATS

PLOT_DIR = "plot"  # the image links' folder in the markdown: the figures' keys, not files
CONFIG = {"displaylogo": False, "responsive": True}
STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto;
       max-width: 1200px; padding: 1em 2em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #ccc; } h2 { border-bottom: 1px solid #ddd; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } tr:nth-child(even) td { background: #fafafa; }
code { background: #f3f3f3; padding: 0 0.2em; border-radius: 3px; }
nav { font-size: 0.9em; } nav a { margin-right: 1em; white-space: nowrap; }
.plot { margin: 0.5em 0 1.5em; }
"""
IMAGE = re.compile(r"^!\[(?P<alt>[^\]]*)\]\((?P<src>[^)]*)\)$")
HEADING = re.compile(r"^(?P<level>#{1,6}) (?P<text>.*)$")
SEPARATOR = re.compile(r"^\|[-:| ]+\|$")
CELL_SPLIT = re.compile(r"(?<!\\)\|")


def inline(text: str) -> str:
    """Escaped text with **bold** and `code` spans."""
    out = html.escape(text, quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"


def _cells(row: str) -> list[str]:
    parts = CELL_SPLIT.split(row.strip())[1:-1]  # the outer pipes leave empty ends
    return [p.strip().replace("\\|", "|") for p in parts]


def _table(rows: list[str]) -> list[str]:
    header, body = _cells(rows[0]), [_cells(r) for r in rows[1:] if not SEPARATOR.match(r)]
    out = ["<table>", "<thead><tr>" + "".join(f"<th>{inline(h)}</th>" for h in header) + "</tr>"]
    out.append("</thead><tbody>")
    out += ["<tr>" + "".join(f"<td>{inline(c)}</td>" for c in row) + "</tr>" for row in body]
    return [*out, "</tbody></table>"]


def _block(
    lines: list[str], i: int, figure: Callable[[str, str], str], ids: dict[str, int]
) -> tuple[list[str], int]:
    """The HTML of the block starting at lines[i], and the index after it; `ids` counts the
    heading ids given so far (a workload's name heads a subsection in several sections)."""
    line = lines[i]
    if m := HEADING.match(line):
        n, text = len(m["level"]), m["text"]
        base = slug(text)
        ids[base] = ids.get(base, 0) + 1
        anchor = base if ids[base] == 1 else f"{base}-{ids[base]}"
        return [f'<h{n} id="{anchor}">{inline(text)}</h{n}>'], i + 1
    if m := IMAGE.match(line):
        return [figure(m["src"], m["alt"])], i + 1
    j = i
    if line.startswith("|"):
        while j < len(lines) and lines[j].startswith("|"):
            j += 1
        return _table(lines[i:j]), j
    if line.startswith("- "):
        while j < len(lines) and lines[j].startswith("- "):
            j += 1
        return ["<ul>", *(f"<li>{inline(x[2:])}</li>" for x in lines[i:j]), "</ul>"], j
    while j < len(lines) and lines[j] and not _starts_block(lines[j]):
        j += 1
    return [f"<p>{inline(' '.join(lines[i:j]))}</p>"], j


def _starts_block(line: str) -> bool:
    return bool(HEADING.match(line) or IMAGE.match(line)) or line.startswith(("|", "- "))


def to_html(markdown: str, figure: Callable[[str, str], str]) -> list[str]:
    """The report's markdown as HTML lines; `figure(src, alt)` gives the HTML of an image."""
    lines, out, i = markdown.splitlines(), [], 0
    ids: dict[str, int] = {}
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        block, i = _block(lines, i, figure, ids)
        out += block
    return out


def _nav(body: list[str]) -> str:
    """Links to the sections (the h2 headings) of the page."""
    sections = [m for line in body if (m := re.match(r'^<h2 id="([^"]+)">(.*)</h2>$', line))]
    links = " ".join(f'<a href="#{m[1]}">{m[2]}</a>' for m in sections)  # spaces: may wrap
    return f"<nav>{links}</nav>"


def figure_divs(key: str, figs: list[Any]) -> str:
    """Each figure as a div with its own newPlot call (plotly.js is loaded once, in the head)."""
    divs = [
        fig.to_html(
            full_html=False,
            include_plotlyjs=False,
            div_id=f"plot-{key}-{i}",
            config=CONFIG,
            default_width="100%",
        )
        for i, fig in enumerate(figs)
    ]
    return "".join(f'<div class="plot">{d}</div>' for d in divs)


def page(title: str, body: list[str], plotly_js: str) -> str:
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{html.escape(title)}</title>",
            f"<style>{STYLE}</style>",
            f'<script type="text/javascript">{plotly_js}</script>',
            "</head>",
            "<body>",
            *body,
            "</body>",
            "</html>",
            "",
        ]
    )


def render_html(paths: Sequence[Path], tolerance_nats: float = DEFAULT_TOLERANCE_NATS) -> str:
    """The whole page: the report's sections, every plot interactive, plotly.js inline."""
    from hlbench.reporting import interactive
    from hlbench.reporting.analysis import analyse, sections
    from hlbench.reporting.evalcurves import TITLES, eval_curve_plots
    from hlbench.reporting.plotseries import catalogue

    interactive.graph_objects()  # fail before any work when plotly is missing
    from plotly.offline import get_plotlyjs

    a = analyse(paths, tolerance_nats)
    figs: dict[str, list[Any]] = {}
    links = []
    # as in the markdown: no plots section entries without a cell
    for title, plot, reason in catalogue(a.cells, a.fronts) if len(a.cells) else []:
        if plot is not None:
            figs[plot.key] = interactive.figures(plot)
        links.append((title, plot.key if plot else None, reason, plot.note if plot else ""))
    profile = _profile_figure(a.df)
    if profile is not None:
        figs["profile-phases"] = [profile]
    curves = []
    for plot in eval_curve_plots(a.df):
        figs[plot.key] = interactive.figures(plot)
        curves.append((TITLES[plot.key], plot.key, plot.note))
    markdown = sections(a, links, "profile-phases" if profile else None, PLOT_DIR, curves)

    def figure(src: str, alt: str) -> str:
        key = src.removeprefix(f"{PLOT_DIR}/")
        return figure_divs(key, figs[key]) if key in figs else f"<p>{inline(alt)}</p>"

    body = to_html(markdown, figure)
    body.insert(1, _nav(body))  # after the title
    title = markdown.splitlines()[0].lstrip("# ")
    return page(title, body, get_plotlyjs())


def _profile_figure(df: Any) -> Any:
    from hlbench.profiling.phases import PHASES
    from hlbench.reporting import interactive
    from hlbench.reporting.profiling import profiled

    cells = profiled(df)
    if cells.empty:
        return None
    present = [
        p for p in PHASES if f"phase_{p}_share" in cells and cells[f"phase_{p}_share"].notna().any()
    ]
    return interactive.phase_shares(cells, present)


def write_html(
    paths: Sequence[Path], out_html: Path, tolerance_nats: float = DEFAULT_TOLERANCE_NATS
) -> Path:
    """Write the single-file HTML report; returns its path."""
    text = render_html(paths, tolerance_nats)
    out_html = Path(out_html)
    out_html.parent.mkdir(parents=True, exist_ok=True)
    out_html.write_text(text, encoding="utf-8")
    return out_html
