"""The report of time-to-target records: eval-curve plots, the frontier on time to target, and the
findings against each cell's baseline twin. Records are synthesized (no training): each seed's eval
curve decays geometrically towards a plateau and stops at its first eval at the target, as the
worker's does (hlbench.worker.quality)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hlbench.reporting import analyse, render
from hlbench.reporting.evalcurves import eval_curve_plots
from hlbench.reporting.frontier import TIME_TO_TARGET, TOKENS_PER_S
from hlbench.reporting.plots import figure, pyplot
from tests.helpers import lognormal_quantiles, record

DATA = Path(__file__).resolve().parent / "data"
TARGET = 0.05  # nats over the floor
FLOOR = 1.0
EVERY = 10  # steps between evals
TOKENS_PER_STEP = 256


def _curve(rate: float, plateau: float, step_s: float, absolute: bool) -> dict[str, list[Any]]:
    """Evals every EVERY steps, excess = plateau + (3 − plateau)·2^(−rate·k), up to the target."""
    cols: dict[str, list[Any]] = {k: [] for k in ("step", "tokens", "train_time_s", "eval_s")}
    cols |= {"eval_loss": [], "excess_nats": []}
    for k in range(1, 41):
        excess = plateau + (3.0 - plateau) * 0.5 ** (rate * k)
        step = k * EVERY
        cols["step"].append(step)
        cols["tokens"].append(step * TOKENS_PER_STEP)
        cols["train_time_s"].append(round(step * step_s, 6))
        cols["eval_s"].append(0.01)
        cols["eval_loss"].append(FLOOR + excess)
        cols["excess_nats"].append(None if absolute else excess)
        if excess <= TARGET:
            break
    return cols


def _record(
    cell_id: str,
    seed: int,
    rate: float,
    plateau: float = 0.0,
    step_s: float = 0.01,
    absolute: bool = False,
    curve: bool = True,
    peak_bytes: int = 2**30,
) -> dict[str, Any]:
    _, backend, precision, ga, pruning = cell_id.split("/")
    rec = record(
        lognormal_quantiles(20, 10_000.0, 0.02),
        cell_id=cell_id,
        cell_hash=hashlib.sha256(cell_id.encode()).hexdigest()[:16],
        repeat=seed,
        peak_bytes=peak_bytes,
    )
    rec["cell"]["axes"] = {"precision": precision, "accumulation": int(ga[2:]), "pruning": pruning}
    rec["cell"]["init_seed"] = seed
    c = _curve(rate, plateau, step_s, absolute)
    reached = c["eval_loss"][-1] - FLOOR <= TARGET
    kind, value = ("eval_loss", FLOOR + TARGET) if absolute else ("excess_nats", TARGET)
    excess = [e for e in c["excess_nats"] if e is not None]
    rec["quality"] = {
        "mode": "time_to_target",
        "seed": seed,
        "target": {"kind": kind, "value": value},
        "entropy_floor_nats": None if absolute else FLOOR,
        "reached": reached,
        "stopped_by": "target" if reached else "step budget",
        "time_to_target_s": c["train_time_s"][-1] if reached else None,
        "steps_to_target": c["step"][-1] if reached else None,
        "tokens_to_target": c["tokens"][-1] if reached else None,
        "eval_s_total": sum(c["eval_s"]),
        "best_eval_loss": min(c["eval_loss"]),
        "best_excess_nats": min(excess) if excess else None,
        "final_excess_nats": excess[-1] if excess else None,
        "eval_curve": c if curve else None,
    }
    rec["loss"] = {
        "eval_loss": c["eval_loss"][-1],
        "excess_eval_loss_nats": excess[-1] if excess else None,
    }
    return rec


def _write(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


FP32 = "gpt-tiny/torch/fp32/ga1/none"
BF16 = "gpt-tiny/torch/bf16/ga1/none"
FP16 = "gpt-tiny/torch/fp16/ga1/none"
GA4 = "gpt-tiny/torch/fp32/ga4/none"
PRUNED = "gpt-tiny/torch/fp32/ga1/magnitude"


def _suite(tmp_path: Path, **kw: Any) -> Path:
    """fp32 (the baseline), bf16 clearly faster to the target, fp16 reaching it in 2 of 5 seeds
    only, 4 accumulation steps as fast as fp32, magnitude pruning slower; 5 seeds each."""
    records = []
    for seed in range(5):
        jitter = 0.03 * seed
        records += [
            _record(FP32, seed, 0.5 + jitter, **kw),
            _record(BF16, seed, 0.5 + jitter, step_s=0.006, peak_bytes=2**29, **kw),
            _record(FP16, seed, 0.5 + jitter, plateau=0.0 if seed < 2 else 0.2, **kw),
            _record(GA4, seed, 0.5 + jitter, **kw),
            _record(PRUNED, seed, 0.4 + jitter, **kw),
        ]
    return _write(tmp_path / "ttt.jsonl", records)


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start : end if end >= 0 else len(text)]


def _finding(text: str, what: str) -> str:
    findings = _section(text, "## Findings")
    return next(line for line in findings.splitlines() if f"): {what} " in line)


# --------------------------------------------------------------------------------------------------
# Eval-curve plots


def test_eval_curve_plots_are_drawn_and_embedded_in_the_time_to_target_section(tmp_path):
    text = render([_suite(tmp_path)], tmp_path / "r.md")
    section = _section(text, "## Time to target")
    for name in ("eval-curve-time.png", "eval-curve-tokens.png"):
        assert f"(r_plots/{name})" in section
        assert (tmp_path / "r_plots" / name).stat().st_size > 0
    assert "### Eval loss against training time" in section and "one thin line per seed" in (
        section.lower()
    )


def _axes(plot: Any) -> Any:
    fig = figure(plot)
    (ax,) = fig.axes
    return fig, ax


def test_floor_based_curves_are_on_a_log_axis_with_the_target_dashed(tmp_path):
    a = analyse([_suite(tmp_path)])
    by_time, by_tokens = eval_curve_plots(a.df)
    assert (by_time.key, by_tokens.key) == ("eval-curve-time", "eval-curve-tokens")
    (panel,) = by_time.panels
    assert panel.y_log and panel.h_line == (TARGET, "target: excess ≤ 0.05 nats")
    assert len(panel.series) == 25 and sum(s.legend for s in panel.series) == 5  # a line per seed
    # a cell's seeds share its colour; the cells' colours differ
    colours = {
        s.label: {x.colour for x in panel.series if x.label == s.label} for s in panel.series
    }
    assert all(len(c) == 1 for c in colours.values()) and len(set.union(*colours.values())) == 5
    bf16 = [s for s in panel.series if s.label == "torch/bf16/ga1/none"]
    raw = [r for r in a.df.itertuples() if r.cell_id == BF16]
    assert np.array_equal(bf16[0].x, raw[0].eval_curve["train_time_s"])  # seed 0, as recorded
    assert bf16[0].y[-1] <= TARGET < bf16[0].y[-2]
    assert np.array_equal(by_tokens.panels[0].series[0].x[:2], [EVERY * 256, 2 * EVERY * 256])
    fig, ax = _axes(by_time)
    try:
        assert ax.get_yscale() == "log"
        dashed = [ln for ln in ax.lines if ln.get_linestyle() == "--"]
        assert [tuple(ln.get_ydata()) for ln in dashed] == [(TARGET, TARGET)]
    finally:
        pyplot().close(fig)


def test_curves_without_a_floor_are_eval_loss_on_a_linear_axis(tmp_path):
    a = analyse([_suite(tmp_path, absolute=True)])
    by_time, _ = eval_curve_plots(a.df)
    (panel,) = by_time.panels
    assert not panel.y_log and panel.h_line is not None and panel.h_line[0] == FLOOR + TARGET
    assert panel.y_label == "eval loss (nats)"
    assert panel.series[0].y[0] == pytest.approx(FLOOR + 3.0 * 0.5**0.5)  # the loss, not excess
    fig, ax = _axes(by_time)
    try:
        assert ax.get_yscale() == "linear"
    finally:
        pyplot().close(fig)
    text = render([tmp_path / "ttt.jsonl"], tmp_path / "abs.md")
    assert "(abs_plots/eval-curve-time.png)" in text
    line = _finding(text, "bf16")  # no floor: the final eval loss stands for the excess
    assert "final excess loss" not in line and "; final eval loss 1.041 vs 1.041 nats" in line


def test_records_without_curves_get_no_curve_plot_and_no_error(tmp_path):
    text = render([_suite(tmp_path, curve=False)], tmp_path / "r.md")
    assert "## Time to target" in text and "eval-curve" not in text
    assert not (tmp_path / "r_plots" / "eval-curve-time.png").exists()
    fixed = render([DATA / "records.jsonl"], tmp_path / "fixed.md")
    assert "eval-curve" not in fixed and "## Time to target" not in fixed


def test_the_html_report_has_the_curves_as_interactive_figures(tmp_path):
    pytest.importorskip("plotly")
    from hlbench.reporting.html import render_html

    page = render_html([_suite(tmp_path)])
    for key in ("eval-curve-time", "eval-curve-tokens"):
        assert f'id="plot-{key}-0"' in page
    assert '"type":"log"' in page.replace(" ", "")


# --------------------------------------------------------------------------------------------------
# The frontier's basis


def test_the_frontier_is_on_time_to_target_when_the_records_have_it(tmp_path):
    a = analyse([_suite(tmp_path)])
    (front,) = a.fronts
    assert front.basis == TIME_TO_TARGET and front.target == "excess ≤ 0.05 nats"
    assert front.left_off == [FP16]  # its median seed did not reach the target
    # bf16 is fastest to the target and smallest: it dominates every other cell
    assert list(front.cells["cell_id"]) == [BF16]
    ttt = {
        c: float(np.median([r.time_to_target_s for r in a.df.itertuples() if r.cell_id == c]))
        for c in (BF16, FP32)
    }
    assert front.cells["time_to_target_s"].iloc[0] == pytest.approx(ttt[BF16])
    text = render([tmp_path / "ttt.jsonl"], tmp_path / "r.md")
    section = _section(text, "## What to train with")
    assert "Speed basis: time to target (excess ≤ 0.05 nats)" in section
    assert f"Left off (the median seed did not reach the target): {FP16}." in section
    assert "| cell | tokens/s" not in section.replace("  ", " ")
    assert f"Fastest gpt-tiny cell to the target (excess ≤ 0.05 nats): {BF16}" in text
    assert "### Trade-off: time to target against memory" in text


def test_the_frontier_stays_on_tokens_per_s_without_time_to_target(tmp_path):
    a = analyse([DATA / "records.jsonl"])
    assert a.fronts and {f.basis for f in a.fronts} == {TOKENS_PER_S}
    text = render([DATA / "records.jsonl"], tmp_path / "r.md")
    assert "Speed basis" not in text and "time to target" not in text.lower()


# --------------------------------------------------------------------------------------------------
# Findings against the baseline twin


def _medians(a: Any, cell_id: str) -> tuple[float, float]:
    rows = [r for r in a.df.itertuples() if r.cell_id == cell_id]
    ttt = [r.time_to_target_s if r.reached else np.inf for r in rows]
    return float(np.median(ttt)), float(np.median([r.final_excess_nats for r in rows]))


def test_each_cell_is_stated_against_its_twin_with_ratio_interval_and_seeds(tmp_path):
    path = _suite(tmp_path)
    a, text = analyse([path]), render([path], tmp_path / "r.md")
    (t32, f32), (t16, f16) = _medians(a, FP32), _medians(a, BF16)
    line = _finding(text, "bf16")
    m = re.search(r"in (\S+)× fp32's time \[(\S+)–(\S+)\], 5/5 seeds \(fp32: 5/5 seeds\)", line)
    assert m, line
    value, lo, hi = (float(g) for g in m.groups())
    assert value == pytest.approx(t16 / t32, abs=0.005) and value < 1
    assert lo <= value <= hi < 1 and "interval includes 1" not in line
    # bf16 learns as fp32 per token (the same curves): the time ratio is step speed alone
    assert re.search(r"— measurably faster; tokens to target 1\.00× \[\S+\] \(no measurable", line)
    assert "bf16 reaches 0.05 nats of the floor in" in line
    assert f"final excess loss {f16:.3f} vs {f32:.3f} nats, difference" in line
    # 4 accumulation steps train the same curve: no measurable change, and said so
    ga4 = _finding(text, "4 accumulation steps")
    assert (
        "4 accumulation steps reach 0.05 nats of the floor in 1.00× 1 step's time [" in ga4
        and "interval includes 1: no measurable change" in ga4
    )
    assert "interval includes 0: no measurable change in final excess loss" in ga4
    pruned = _finding(text, "magnitude pruning")
    m = re.search(r"in (\S+)× the unpruned cell's time \[(\S+)–(\S+)\]", pruned)
    assert m and float(m[1]) > 1 and float(m[2]) > 1, pruned
    # it learns more slowly per token: more tokens, measurably, and slower
    assert "measurably slower; tokens to target" in pruned
    m = re.search(r"tokens to target (\S+)× \[(\S+)–(\S+)\] — measurably more", pruned)
    assert m and float(m[2]) > 1, pruned
    # a cell whose median seed misses the target: no ratio, the share of seeds that reached it
    fp16 = _finding(text, "fp16")
    assert "does not reach 0.05 nats of the floor within the budget in the median seed" in fp16
    assert "2/5 seeds reached (fp32: 5/5 seeds" in fp16 and "×" not in fp16


def test_an_unbounded_interval_reads_unbounded_not_inf(tmp_path):
    # 3 of 5 seeds reach: the median is finite, but resamples with most seeds missing are not
    records = [_record(FP32, s, 0.5) for s in range(5)]
    records += [_record(BF16, s, 0.5, plateau=0.0 if s < 3 else 0.2) for s in range(5)]
    text = render([_write(tmp_path / "r.jsonl", records)], tmp_path / "r.md")
    line = _finding(text, "bf16")
    assert "3/5 seeds" in line and "–unbounded]" in line and "inf" not in line
    assert "interval includes 1" in line


def test_a_twin_that_misses_the_target_is_said_to(tmp_path):
    records = [_record(FP32, s, 0.5, plateau=0.0 if s < 2 else 0.2) for s in range(5)]
    records += [_record(BF16, s, 0.5) for s in range(5)]
    text = render([_write(tmp_path / "r.jsonl", records)], tmp_path / "r.md", draw_plots=False)
    line = _finding(text, "bf16")
    assert (
        "bf16 reaches 0.05 nats of the floor in 1.2 s, 5/5 seeds; fp32 does not" in line
    )  # 12 evals
    assert "(2/5 seeds reached)" in line and "×" not in line
