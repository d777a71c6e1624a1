"""The single-file HTML report: the markdown's sections, interactive plots that carry each cell's
figures, offline (plotly.js inline), the same bytes for the same records, a one-line error without
plotly; and a real headless Chromium loading the page with no console error and every plot drawn.

The browser test needs `chromium` (Debian: `apt-get install chromium`; `.ci/run` installs it and
sets HLBENCH_REQUIRE_BROWSER=1, which turns the skip into a failure).
"""

from __future__ import annotations

import html
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hlbench.cli import main
from hlbench.reporting import analyse, render

DATA = Path(__file__).resolve().parent / "data"
RECORDS = [DATA / "troubled.jsonl", DATA / "parity.jsonl"]  # every plot has data here
PROFILED = Path(__file__).resolve().parent.parent / "reports" / "records" / "profile"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

needs_plotly = pytest.mark.skipif(
    importlib.util.find_spec("plotly") is None, reason="the html extra (plotly) is not installed"
)


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("html") / "report.html"
    assert main(["report", *map(str, RECORDS), "-o", str(out)]) == 0
    return out


@needs_plotly
def test_the_page_has_the_markdown_sections_and_an_interactive_plot_each(
    page: Path, tmp_path: Path
) -> None:
    text = page.read_text(encoding="utf-8")
    markdown = render(RECORDS, tmp_path / "r.md", draw_plots=False)
    for heading in re.findall(r"^## (.+)$", markdown, flags=re.M):
        assert f">{html.escape(heading, quote=False)}</h2>" in text, heading
    # every plot the markdown links is a figure here; none is an image file
    with_plots = render(RECORDS, tmp_path / "p.md")
    titles = re.findall(r"^!\[([^\]]+)\]", with_plots, flags=re.M)
    assert len(titles) >= 6 and "<img" not in text
    keys = set(re.findall(r'id="plot-([a-z0-9-]+)-\d+"', text))
    assert keys == {
        "throughput",
        "peak-memory",
        "trade-off",
        "memory-over-time",
        "loss-curves",
        "sparsity-vs-loss",
        "accumulation-vs-memory",
    }
    # the tables come through as tables, with the markdown's numbers
    cell = "gpt-tiny/torch/fp32/ga1/none"
    assert f"<td>{cell}</td>" in text and "<th>tokens/s</th>" in text


@needs_plotly
def test_the_page_works_offline_and_is_deterministic(page: Path, tmp_path: Path) -> None:
    text = page.read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=|@import|<iframe", text)
    assert text.count("Plotly.newPlot(") == len(re.findall(r'class="plotly-graph-div"', text))
    assert len(text) > 3_000_000  # plotly.js itself is inline
    again = tmp_path / "again.html"
    assert main(["report", *map(str, RECORDS), "-o", str(again)]) == 0
    assert again.read_bytes() == page.read_bytes()


@needs_plotly
def test_hover_text_names_the_cell_and_its_figures() -> None:
    from hlbench.reporting import interactive
    from hlbench.reporting.plotseries import catalogue

    a = analyse(RECORDS)
    plots = {plot.key: plot for _, plot, _ in catalogue(a.cells, a.fronts) if plot}
    (fig, *_) = interactive.figures(plots["throughput"])
    bars = [t for t in fig.data if t.type == "bar"]
    assert [t.name for t in bars] and all(t.name in ("PyTorch", "TensorFlow") for t in bars)
    hover = [h for t in bars for h in t.hovertext if h]
    assert all(re.match(r"gpt-tiny/\w+/[\w-]+/ga1/none: [\d,.]+ tokens/s \[", h) for h in hover)
    assert all(t.error_y.array is not None for t in bars)  # error bars from the intervals
    memory = interactive.figures(plots["memory-over-time"])[0]
    assert memory.layout.shapes and memory.layout.shapes[0].name == "measured windows"
    assert memory.layout.legend.x >= 1.0  # right of the plot area, not over the data
    trade = interactive.figures(plots["trade-off"])[0]
    front = next(t for t in trade.data if t.name == "Pareto front")
    assert front.text and all("/" in label for label in front.text)


def test_the_converter_reads_what_the_markdown_report_writes() -> None:
    from hlbench.reporting.html import to_html

    markdown = "\n".join(
        [
            "## Frameworks side by side",
            "",
            "### gpt-tiny",
            "",
            "- **Suite:** a <b> `x|y`",
            "",
            "| cell | note |",
            "|------|------|",
            "| a\\|b | 1 < 2 |",
            "",
            "![Loss](plot/loss-curves)",
            "",
            "### gpt-tiny",
            "",
            "first line",
            "second line",
        ]
    )
    body = to_html(markdown, lambda src, alt: f"<figure {src} {alt}>")
    assert body == [
        '<h2 id="frameworks-side-by-side">Frameworks side by side</h2>',
        '<h3 id="gpt-tiny">gpt-tiny</h3>',
        "<ul>",
        "<li><strong>Suite:</strong> a &lt;b&gt; <code>x|y</code></li>",
        "</ul>",
        "<table>",
        "<thead><tr><th>cell</th><th>note</th></tr>",
        "</thead><tbody>",
        "<tr><td>a|b</td><td>1 &lt; 2</td></tr>",
        "</tbody></table>",
        "<figure plot/loss-curves Loss>",
        '<h3 id="gpt-tiny-2">gpt-tiny</h3>',
        "<p>first line second line</p>",
    ]


def test_without_plotly_the_error_is_one_line_naming_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in [m for m in sys.modules if m == "plotly" or m.startswith("plotly.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "plotly", None)  # import plotly raises ImportError
    out = tmp_path / "r.html"
    assert main(["report", str(RECORDS[0]), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pip install 'hlbench[html]'" in err and not out.exists()
    assert main(["report", str(RECORDS[0]), "-o", str(tmp_path / "r.pdf")]) == 2
    assert ".html" in capsys.readouterr().err


# --- a real browser ------------------------------------------------------------------------------

# Recorded from the first script on: uncaught errors, rejected promises and console.error calls.
PROBE_HEAD = """<script>
window.__errors = [];
window.addEventListener("error", (e) => window.__errors.push("error: " + e.message));
window.addEventListener("unhandledrejection",
                        (e) => window.__errors.push("rejection: " + e.reason));
(() => { const original = console.error;
  console.error = (...args) => { window.__errors.push("console.error: " + args.join(" "));
                                 original.apply(console, args); }; })();
</script>"""
# After load: how many plot divs drew a trace into their SVG and a legend, what hovering a point of
# the first one shows, and whether a click on the second one's first legend entry hides that series
# (plotly waits out its double-click delay before it applies a single click).
PROBE_TAIL = """<script>
window.addEventListener("load", () => setTimeout(() => {
  const divs = [...document.querySelectorAll("div.plotly-graph-div")];
  const [first, second] = divs;
  const drawn = divs.filter((d) => d.querySelector("svg.main-svg g.trace path")).length;
  const legends = divs.filter((d) => d.querySelector(".legend .traces")).length;
  try { Plotly.Fx.hover(first, [{curveNumber: 0, pointNumber: 0}]); }
  catch (e) { window.__errors.push("hover: " + e); }
  const hover = first.querySelector(".hoverlayer .hovertext");
  const toggle = second.querySelector(".legend .traces .legendtoggle");
  const box = toggle.getBoundingClientRect();
  const at = {bubbles: true, cancelable: true, view: window,
              clientX: box.x + 5, clientY: box.y + 5};
  toggle.dispatchEvent(new MouseEvent("mousedown", {...at, buttons: 1}));
  toggle.dispatchEvent(new MouseEvent("mouseup", at));
  setTimeout(() => {
    const probe = document.createElement("pre");
    probe.id = "probe";
    probe.textContent = JSON.stringify({
      errors: window.__errors,
      plots: divs.length,
      drawn: drawn,
      legends: legends,
      hover: hover ? hover.textContent : null,
      toggled: String(second.data[0].visible),
    });
    document.body.appendChild(probe);
  }, 1000);
}, 500));
</script>"""


def find_browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def run_headless(browser: str, page: Path, profile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=20000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.fixture(scope="module")
def profiled_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The committed profiled CPU run: its Profiling section has a phase-share figure."""
    out = tmp_path_factory.mktemp("html") / "profile.html"
    assert main(["report", *map(str, sorted(PROFILED.glob("*.jsonl"))), "-o", str(out)]) == 0
    return out


@needs_plotly
def test_the_profiling_section_has_its_interactive_phase_shares(profiled_page: Path) -> None:
    text = profiled_page.read_text(encoding="utf-8")
    profiling = text.split('<h2 id="profiling">')[1].split("<h2 ")[0]
    assert 'id="plot-profile-phases-0"' in profiling and "<table>" in profiling


@needs_plotly
@pytest.mark.parametrize("which", ["page", "profiled_page"])
def test_a_headless_browser_draws_every_plot_without_console_errors(
    which: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    page = request.getfixturevalue(which)
    browser = find_browser()
    if browser is None:
        if os.environ.get("HLBENCH_REQUIRE_BROWSER"):
            pytest.fail("HLBENCH_REQUIRE_BROWSER is set but no chromium is on PATH")
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium)")
    text = page.read_text(encoding="utf-8")
    probed = tmp_path / "probed.html"
    probed.write_text(
        text.replace("<head>", "<head>\n" + PROBE_HEAD, 1).replace(
            "</body>", PROBE_TAIL + "\n</body>", 1
        ),
        encoding="utf-8",
    )
    done = run_headless(browser, probed, tmp_path / "profile")
    found = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, flags=re.S)
    assert found, f"no probe in the DOM (exit {done.returncode}): {done.stderr[-2000:]}"
    probe = json.loads(html.unescape(found.group(1)))
    n_plots = len(re.findall(r'class="plotly-graph-div"', text))
    assert probe["errors"] == [] and probe["plots"] == n_plots >= 6
    assert probe["drawn"] == n_plots and probe["legends"] == n_plots
    # the first figure's first point: its cell, then a figure
    assert re.match(r"gpt-\w+/\w+/[\w-]+/ga\d+/[\w:-]+: .*\d", probe["hover"] or ""), probe["hover"]
    assert probe["toggled"] == "legendonly"  # a legend click hid the series
    # the unmodified page too: nothing uncaught reaches Chromium's console log
    plain = run_headless(browser, page, tmp_path / "profile2")
    console = [line for line in plain.stderr.splitlines() if "CONSOLE" in line]
    assert not [line for line in console if re.search(r"Uncaught|Error", line)], console
    assert plain.stdout.count('class="main-svg"') >= n_plots
