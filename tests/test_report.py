"""Reports and tables: golden markdown, determinism, failures rendered as such, the CLI commands.

Update the golden files after an intended change of the report with
`HLBENCH_UPDATE_GOLDEN=1 python -m pytest tests/test_report.py` and review the diff.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hlbench.cli import main
from hlbench.reporting import analyse, render, write_report
from hlbench.reporting.frontier import nice_ceiling, non_dominated
from hlbench.reporting.plotdata import Panel, palette, short_id
from hlbench.reporting.plots import figure, pyplot
from hlbench.reporting.plotseries import catalogue, loss_excess, merged, trade_off
from hlbench.reporting.stats import bootstrap_medians

DATA = Path(__file__).resolve().parent / "data"
GOLDEN = {
    "golden_records.md": [DATA / "records.jsonl", DATA / "parity.jsonl"],
    "golden_troubled.md": [DATA / "troubled.jsonl"],
}


@pytest.mark.parametrize("golden", sorted(GOLDEN))
def test_golden_markdown(golden: str, tmp_path: Path) -> None:
    text = render(GOLDEN[golden], tmp_path / golden)
    if os.environ.get("HLBENCH_UPDATE_GOLDEN"):
        (DATA / golden).write_text(text, encoding="utf-8")
    assert text == (DATA / golden).read_text(encoding="utf-8")


def test_same_records_in_another_order_give_identical_bytes(tmp_path: Path) -> None:
    lines = (DATA / "records.jsonl").read_text().splitlines(keepends=True)
    shuffled = tmp_path / "shuffled" / "records.jsonl"
    shuffled.parent.mkdir()
    shuffled.write_text("".join(np.random.default_rng(3).permutation(lines)))
    first = write_report([DATA / "records.jsonl"], tmp_path / "a" / "report.md").read_bytes()
    again = write_report([shuffled], tmp_path / "b" / "report.md").read_bytes()
    assert first == again


def test_failed_skipped_and_unstable_cells_render_as_such(tmp_path: Path) -> None:
    text = render([DATA / "troubled.jsonl"], tmp_path / "t.md")
    failures = text.split("## Failures and skips")[1].split("## Stability warnings")[0]
    for status, reason in (
        ("oom", "cannot allocate"),
        ("timeout", "timeout_s=120"),
        ("crashed", "SIGKILL"),
        ("skipped", "tf32 needs an NVIDIA"),
    ):
        assert any(f"| {status}" in line and reason in line for line in failures.splitlines()), (
            status
        )
    assert "2:4" not in failures  # its error was replaced by a resumed ok record
    warnings = text.split("## Stability warnings")[1].split("## Plots")[0]
    # gradual pruning's events fall in the first measured window, which is slower than the others
    assert "ga1/gradual | unstable: window step-time CV" in warnings
    records = _records(DATA / "troubled.jsonl")
    budget = next(r for r in records if r.get("cell_id") == "gpt-tiny/torch/fp32/ga4/none")
    assert budget["timing"]["budget_hit"] and budget["timing"]["steps_measured"] < 20
    assert f"too few steps: {budget['timing']['steps_measured']} measured" in warnings
    assert "time budget hit" in warnings and "throttling" in warnings
    assert "| ok ⚠" in text  # the matrix flags the warned cells
    assert "3 cell(s) failed (crashed 1, oom 1, timeout 1)" in text
    (parity,) = [r for r in records if r.get("kind") == "parity"]  # failed by a perturbed weight
    failed = sorted(c["name"] for c in parity["checks"] if not c["passed"])
    assert not parity["passed"] and failed
    n_passed = len(parity["checks"]) - len(failed)
    assert (
        f"FAILED ({n_passed}/{len(parity['checks'])} checks; failed: {', '.join(failed)})" in text
    )


def test_failed_records_never_enter_statistics(tmp_path: Path) -> None:
    records = [json.loads(line) for line in (DATA / "troubled.jsonl").read_text().splitlines()]
    ok = next(r for r in records if r["cell_id"] == "gpt-tiny/torch/fp32/ga1/none")
    failed = json.loads(json.dumps(ok))
    failed.update(repeat=1, status="error", reason="boom")  # keeps its (bogus) metrics
    failed["metrics"]["tokens_per_s"] = 1.0
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(ok) + "\n" + json.dumps(failed) + "\n")
    text = render([path], tmp_path / "r.md")
    assert f"| {ok['metrics']['tokens_per_s']:,.0f} " in text and "| ok 1/2" not in text
    assert "| error 1/2, ok 1/2" in text and "| 1/2 " in text


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _speedup(records: list[dict], cell_id: str, reference_id: str) -> float:
    """tokens/s of a cell over its reference's, from the median of each one's pooled measured step
    times (the same workload: the same tokens per step), computed here from the raw records."""

    def median_step_s(wanted: str) -> float:
        ok = [r for r in records if r["cell_id"] == wanted and r["status"] == "ok"]
        return float(
            np.median([t for r in ok for w in r["timing"]["window_step_times_s"] for t in w])
        )

    return median_step_s(reference_id) / median_step_s(cell_id)


def _geomean(values: list[float]) -> float:
    return float(np.exp(np.mean(np.log(values))))


def test_findings_are_computed_from_the_data(tmp_path: Path) -> None:
    records = _records(DATA / "records.jsonl")
    text = render([DATA / "records.jsonl"], tmp_path / "r.md")
    findings = text.split("## Findings")[1].split("##")[0]
    bf16 = {
        w: _speedup(records, f"{w}/torch/bf16/ga1/none", f"{w}/torch/fp32/ga1/none")
        for w in ("gpt-tiny", "lstm-tiny")
    }
    cpu = records[0]["env"]["host"]["cpu_model"]
    assert (
        f"bf16 runs at {_geomean(list(bf16.values())):.2f}× fp32's tokens/s in PyTorch on this "
        f"CPU ({cpu})"
    ) in findings
    assert "2:4 pruning in PyTorch: no speedup" in findings
    tf = [
        _speedup(records, f"gpt-tiny/tf/fp32/ga{k}/none", f"gpt-tiny/torch/fp32/ga{k}/none")
        for k in (1, 4)
    ]
    assert f"TensorFlow runs at {_geomean(tf):.2f}× PyTorch's tokens/s in fp32" in findings
    # scale every torch bf16 step time of gpt-tiny by 1/4: the finding must follow the data
    lines = []
    for r in records:
        if r["cell_id"].startswith("gpt-tiny/torch/bf16"):
            r["timing"]["window_step_times_s"] = [
                [t / 4 for t in w] for w in r["timing"]["window_step_times_s"]
            ]
        lines.append(json.dumps(r))
    changed = tmp_path / "changed.jsonl"
    changed.write_text("\n".join(lines) + "\n")
    # (a workload's ratio whose interval includes 1 is followed by "within noise")
    detail = f"(gpt-tiny {4 * bf16['gpt-tiny']:.2f}×, lstm-tiny {bf16['lstm-tiny']:.2f}×"
    assert detail in render([changed], tmp_path / "c.md")


def test_plots_are_written_beside_and_linked_relatively(tmp_path: Path) -> None:
    out = write_report([DATA / "troubled.jsonl"], tmp_path / "reports" / "t.md")
    text = out.read_text()
    links = [line.split("](")[1].rstrip(")") for line in text.splitlines() if line.startswith("![")]
    assert links and all(link.startswith("t_plots/") for link in links)
    for link in links:
        assert (out.parent / link).stat().st_size > 1000
    assert "memory-over-time.png" in text  # drawn from the telemetry samples
    clean = render([DATA / "records.jsonl"], tmp_path / "c.md")
    assert "Not plotted: no telemetry samples in these records." in clean


def test_effects_say_within_noise() -> None:
    text = (DATA / "golden_records.md").read_text()
    effects = text.split("## Effects against the baseline")[1].split("## Frameworks")[0]
    row = next(
        line
        for line in effects.splitlines()
        if line.startswith("| gpt-tiny/torch/fp32/ga1/magnitude")
    )
    # magnitude pruning keeps the dense kernels: so small a memory change is below what RSS resolves
    assert "(within noise)" in row.split("|")[3]
    assert re.search(
        r"\| \d+\.\d\d× \[\d+\.\d\d×, \d+\.\d\d×\]", effects
    )  # speedups carry intervals


def test_frontier_helpers() -> None:
    speed = np.array([10.0, 8.0, 12.0, 9.0])
    memory = np.array([100.0, 80.0, 120.0, 100.0])
    loss = np.array([1.0, 1.0, 1.0, 1.0])
    assert non_dominated(speed, memory, loss).tolist() == [
        True,
        True,
        True,
        False,
    ]  # 9 < 10 at equal memory
    assert nice_ceiling(314.8 * 2**20) == 500 * 2**20 and nice_ceiling(100 * 2**20) == 100 * 2**20


@pytest.mark.parametrize("n", [7, 30])
def test_exact_bootstrap_of_the_median_matches_resampling(n: int) -> None:
    rng = np.random.default_rng(n)
    x = np.concatenate(
        [rng.lognormal(0.0, 0.1, n - n // 3), np.full(n // 3, 1.6)]
    )  # a slow window: bimodal
    brute = np.median(x[rng.integers(0, n, (20000, n))], axis=1)
    exact = bootstrap_medians(x, "00000000000000aa")
    assert np.allclose(
        np.percentile(exact, [2.5, 50, 97.5]), np.percentile(brute, [2.5, 50, 97.5]), rtol=0.02
    )


def test_bootstrap_is_seeded_per_cell() -> None:
    samples = np.linspace(1.0, 2.0, 50)
    assert np.array_equal(
        bootstrap_medians(samples, "af1bd4b165558fc3"),
        bootstrap_medians(samples, "af1bd4b165558fc3"),
    )
    assert not np.array_equal(
        bootstrap_medians(samples, "af1bd4b165558fc3"),
        bootstrap_medians(samples, "0000000000000001"),
    )


# --- the CLI
# ---------------------------------------------------------------------------------------


def test_table_command_formats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["table", str(DATA / "troubled.jsonl")]) == 0
    md = capsys.readouterr().out
    assert "| gpt-tiny/torch/fp16/ga1/none" in md and "| oom " in md

    assert (
        main(
            [
                "table",
                str(DATA / "records.jsonl"),
                "--pivot",
                "workload,backend:precision",
                "--metric",
                "step_time_median_s",
                "--format",
                "csv",
                "-o",
                str(tmp_path / "p.csv"),
            ]
        )
        == 0
    )
    header = (tmp_path / "p.csv").read_text().splitlines()[0]
    assert header == "workload,backend,bf16,fp16,fp32"

    assert main(["table", str(DATA), "--format", "json", "-o", str(tmp_path / "t.json")]) == 0
    rows = json.loads((tmp_path / "t.json").read_text())
    assert len(rows) == 48 and "step_times_s" not in rows[0] and rows[0]["tokens_per_s"] > 0


def test_table_gab_json_for_github_action_benchmark(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "table",
                str(DATA / "troubled.jsonl"),
                "--format",
                "gab-json",
                "--metric",
                "tokens_per_s",
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    entries = json.loads(captured.out)
    assert "customBiggerIsBetter" in captured.err
    assert {e["name"] for e in entries} == {
        f"gpt-tiny/torch/fp32/{c} tokens_per_s"
        for c in ("ga1/none", "ga1/gradual", "ga4/none", "ga1/2:4")
    }
    assert all(
        set(e) <= {"name", "unit", "value", "range", "extra"} and e["unit"] == "tokens/s"
        for e in entries
    )


def test_table_and_report_errors_are_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    newer = tmp_path / "newer.jsonl"
    newer.write_text(json.dumps({"schema_version": 9, "kind": "cell"}) + "\n")
    assert main(["report", str(newer), "-o", str(tmp_path / "r.md")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "newer.jsonl: line 1: records schema version 9" in err
    assert main(["table", str(DATA / "records.jsonl"), "--pivot", "precision"]) == 2
    assert "expected ROWS:COLS" in capsys.readouterr().err
    assert main(["table", str(DATA / "records.jsonl"), "--metric", "speed"]) == 2
    assert "not a numeric column" in capsys.readouterr().err


def test_report_command_writes_markdown_and_plots(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "results" / "fixture"
    src.mkdir(parents=True)
    shutil.copy(DATA / "records.jsonl", src / "run.jsonl")
    out = tmp_path / "reports" / "fixture.md"
    assert main(["report", str(src), "-o", str(out)]) == 0
    assert out.read_text().startswith("# hlbench report: fixture\n")
    assert (tmp_path / "reports" / "fixture_plots" / "throughput.png").exists()


def test_profiled_records_get_a_profiling_section(tmp_path: Path) -> None:
    """Phase shares per cell, category shares per backend and precision, and the stacked-bar plot;
    records without a profile (every other test here) get no such section."""
    phases = {
        "host_batch": 0.05,
        "host_to_device": 0.01,
        "forward": 0.3,
        "backward": 0.5,
        "unscale_clip": 0.04,
        "optimizer": 0.1,
    }
    categories = {
        "matmul": 0.4,
        "attention": 0.1,
        "normalization": 0.05,
        "elementwise": 0.2,
        "optimizer": 0.1,
        "cast": 0.05,
        "data_movement": 0.08,
        "communication": 0.0,
        "other": 0.02,
    }
    lines = []
    for line in (DATA / "records.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r["cell_id"] == "gpt-tiny/torch/fp32/ga1/none" and r["status"] == "ok":
            r["profile"] = {"phase_shares": phases, "category_shares": categories, "step_s": 0.0064}
        lines.append(json.dumps(r))
    profiled = tmp_path / "profiled.jsonl"
    profiled.write_text("\n".join(lines) + "\n")
    out = write_report([profiled], tmp_path / "p.md")
    section = out.read_text().split("## Profiling")[1].split("\n## ")[0]

    def cells_of(prefix: str) -> list[str]:
        (line,) = [ln for ln in section.splitlines() if ln.startswith(prefix)]
        return [c.strip() for c in line.strip("|").split("|")]

    assert cells_of("| gpt-tiny/torch/fp32/ga1/none") == [
        "gpt-tiny/torch/fp32/ga1/none",
        "6.40",
        "5.0%",
        "1.0%",
        "30.0%",
        "50.0%",
        "4.0%",
        "10.0%",
    ]
    assert cells_of("| PyTorch")[:3] == [
        "PyTorch",
        "fp32",
        "40.0%",
    ]  # matmul share of the torch fp32 cells
    assert (tmp_path / "p_plots" / "profile-phases.png").stat().st_size > 1000
    assert "## Profiling" not in render([DATA / "records.jsonl"], tmp_path / "c.md")


def test_technique_events_and_withheld_mfu_are_shown_as_such(tmp_path: Path) -> None:
    records = [json.loads(line) for line in (DATA / "records.jsonl").read_text().splitlines()]
    pruned = next(r for r in records if r["cell_id"] == "gpt-tiny/torch/fp32/ga1/magnitude")
    pruned["timing"]["technique_events"] = [
        {"technique": "pruning", "step": s, "s": 0.9} for s in range(0, 24, 2)
    ]
    dense = next(r for r in records if r["cell_id"] == "gpt-tiny/torch/fp32/ga1/none")
    dense["metrics"].update(
        mfu=None, mfu_flag="calibration problem: MFU would be 101% of the best peak"
    )
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in (pruned, dense)))
    text = render([path], tmp_path / "r.md", draw_plots=False)
    assert (
        "- gpt-tiny/torch/fp32/ga1/magnitude: pruning events: 12 × 0.9 s, not in tokens/s" in text
    )
    assert "## MFU not reported: calibration problems" in text
    assert "- gpt-tiny/torch/fp32/ga1/none: ⚠ calibration problem: MFU would be 101%" in text
    assert "101.0%" not in text


# --- plot data: what matplotlib and plotly are handed
# ------------------------------------------------------------------------------------------------


def _plots(paths: list[Path]) -> dict[str, Any]:
    a = analyse(paths)
    return {plot.key: plot for _, plot, _ in catalogue(a.cells, a.fronts) if plot}


def test_loss_curves_read_zero_where_a_cell_trains_like_its_fp32_twin() -> None:
    cells = analyse([DATA / "records.jsonl"]).cells.copy()
    curve = np.linspace(5.5, 3.0, 40)
    cells["loss_curve_nats"] = [curve.copy() for _ in range(len(cells))]
    series = {s.label: s for p in loss_excess(cells).panels for s in p.series}
    assert series and all(np.array_equal(s.y, np.zeros(40)) for s in series.values())
    # the twin: the same cell in fp32; an fp32 cell against the baseline, which is the zero line
    assert "torch/bf16/ga4/none − torch/fp32/ga4/none" in series
    assert "torch/fp32/ga4/none − torch/fp32/ga1/none" in series
    assert not any(label.startswith("torch/fp32/ga1/none ") for label in series)
    i = cells.index[cells["cell_id"] == "gpt-tiny/torch/bf16/ga1/none"][0]
    cells.at[i, "loss_curve_nats"] = np.concatenate([curve + 0.1, [9.9]])  # one step longer
    (shifted,) = [
        s
        for p in loss_excess(cells).panels
        for s in p.series
        if p.title.startswith("gpt-tiny:")
        and s.label == "torch/bf16/ga1/none − torch/fp32/ga1/none"
    ]
    assert len(shifted.y) == 40 and np.allclose(shifted.y, 0.1)


@pytest.mark.parametrize("n", [1, 10, 12, 20, 21, 64])
def test_palette_never_repeats_a_colour(n: int) -> None:
    colours = palette(n)
    assert len(colours) == len(set(colours)) == n


@pytest.mark.parametrize("records", ["records.jsonl", "troubled.jsonl"])
def test_every_panel_has_its_own_colours_and_intervals_as_error_bars(records: str) -> None:
    plots = _plots([DATA / records])
    for plot in plots.values():
        for panel in plot.panels:
            if isinstance(panel, Panel):
                colours = [s.colour for s in panel.series]
                assert len(set(colours)) == len(colours), (plot.key, panel.title)
    cells = analyse([DATA / records]).cells.set_index("cell_id")
    n_checked = 0
    for panel in plots["throughput"].panels:
        for s in panel.series:
            for y, lo, hi, hover in zip(s.y, s.y_lo, s.y_hi, s.hover):
                if not np.isfinite(y):
                    continue
                c = cells.loc[hover.split(":")[0]]
                draws = c["tokens_per_step"] / c["boot_median_step_s"]
                assert y == pytest.approx(c["tokens_per_step"] / c["step_time_median_s"])
                assert (lo, hi) == pytest.approx(tuple(np.percentile(draws, [2.5, 97.5])))
                assert lo < y < hi
                n_checked += 1
    assert n_checked >= 1
    for panel in plots["peak-memory"].panels:
        for s in panel.series:
            for lo, hi, hover in zip(s.y_lo, s.y_hi, s.hover):
                each = cells.loc[hover.split(":")[0], "peak_mem_each_bytes"] / 2**20
                assert (lo, hi) == pytest.approx((each.min(), each.max()))


def test_memory_over_time_starts_at_the_first_window_and_marks_the_windows() -> None:
    plot = _plots([DATA / "troubled.jsonl"])["memory-over-time"]
    (panel,) = plot.panels
    assert panel.shades and panel.shades[0][0] == 0.0 and panel.shade_label == "measured windows"
    assert "t = 0 is the start of each cell's first measured window" in plot.note
    for s in panel.series:
        assert s.bold is not None and s.bold.any() and (s.x[s.bold] >= 0).all()
        assert (s.x < 0).any()  # start-up and warm-up, before the first window
    assert merged([(3.0, 4.0), (0.0, 1.0), (0.5, 2.0)]) == [(0.0, 2.0), (3.0, 4.0)]


def test_trade_off_marks_the_pareto_front() -> None:
    a = analyse([DATA / "records.jsonl"])
    plot = trade_off(a.cells, a.fronts)
    assert plot is not None and len(plot.panels) == len(a.fronts) >= 2
    dominated = 0
    for panel, front in zip(plot.panels, a.fronts):
        on_front = {short_id(c, front.workload) for c in front.cells["cell_id"]}
        assert {panel.labels[i] for i in panel.front} == on_front
        assert (np.diff(panel.memory_mib[panel.front]) >= 0).all()  # the line runs left to right
        dominated += len(panel.labels) - len(on_front)  # dominated cells are drawn too
        assert np.isfinite(panel.excess_nats).all()  # the colour of every point
        lo, hi = panel.colour_range
        assert lo <= panel.excess_nats.min() <= panel.excess_nats.max() <= hi
        assert hi - lo >= 0.01 - 1e-12  # at least the noise level
    assert dominated > 0


def test_legends_sit_outside_the_axes() -> None:
    plots = _plots([DATA / "troubled.jsonl"])
    plt = pyplot()
    for key in ("memory-over-time", "loss-curves", "throughput"):
        fig = figure(plots[key])
        renderer = fig.canvas.get_renderer()
        for ax in fig.axes:
            legend = ax.get_legend()
            assert legend is not None, key
            assert not legend.get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))
        plt.close(fig)


def test_two_suites_that_reuse_cell_ids_report_together(tmp_path):
    # records.jsonl and troubled.jsonl name some cells alike with other definitions (hashes)
    paths = [DATA / "records.jsonl", DATA / "troubled.jsonl"]
    text = render(paths, tmp_path / "both.md")
    assert "## " in text
    ids = {
        p.name: {json.loads(line).get("cell_id") for line in p.read_text().splitlines()}
        for p in paths
        if p.exists()
    }
    assert ids["records.jsonl"] & ids["troubled.jsonl"] - {None}
