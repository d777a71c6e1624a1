"""`hlbench compare`: verdicts over runs, environment refusal, exit codes, formats.

Records here are synthetic (the fields compare reads, shaped like a real CPU record); no framework
is imported. Each repeat of a cell is one run (a worker process) and gives one estimate per metric,
so the synthetic runs carry their own offset with correlated steps around it (tests.helpers.runs).
The end-to-end test at the bottom trains a tiny torch cell in two suite runs, the second with the
documented test-only delay, and expects `compare` to call it a regression.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from hlbench.cli import main
from hlbench.comparison.comparability import environment, environment_differences
from hlbench.comparison.metrics import METRICS
from hlbench.comparison.runs import compare_runs
from hlbench.comparison.verdicts import (
    EXIT_INCOMPARABLE,
    EXIT_INCONCLUSIVE,
    EXIT_OK,
    EXIT_REGRESSED,
    FAILED,
    IMPROVED,
    INCONCLUSIVE,
    NOT_AVAILABLE,
    REGRESSED,
    UNCHANGED,
    Thresholds,
    compare_samples,
    exit_code,
)
from hlbench.records.identity import current_records
from tests.data.telemetry_replay import telemetry_section, ticks, with_gpu
from tests.helpers import (
    A100,
    H200,
    REPO,
    STEADY,
    TOKENS_PER_STEP,
    lognormal,
    lognormal_quantiles,
    record,
    run_cli,
    runs,
    runs_at,
    suite_yaml,
    write,
)

# ------------------------------------------------------------------------------------------------
# The verdict rule on per-run estimates


def test_identical_distributions_are_unchanged():
    base, cand = lognormal(8, 1000.0, 0.005, seed=1), lognormal(8, 1000.0, 0.005, seed=2)
    c = compare_samples(base, cand, higher_is_better=True)
    assert c.verdict == UNCHANGED and "within ±5%" in c.note
    assert abs(c.change) < 0.01 and c.p_value > 0.05 and -0.05 < c.ci_low < c.ci_high < 0.05, c


def test_twenty_percent_slowdown_with_low_noise_regresses():
    base, cand = lognormal(8, 1000.0, 0.005, seed=1), lognormal(8, 800.0, 0.005, seed=2)
    c = compare_samples(base, cand, higher_is_better=True)
    assert c.verdict == REGRESSED and (c.n_baseline, c.n_candidate) == (8, 8)
    assert c.change == pytest.approx(-0.20, abs=0.01) and c.p_value < 0.001, c
    assert c.ci_low < c.change < c.ci_high < 0, c


def test_twenty_percent_speedup_improves():
    base, cand = lognormal(8, 1000.0, 0.005, seed=1), lognormal(8, 1200.0, 0.005, seed=2)
    c = compare_samples(base, cand, higher_is_better=True)
    assert c.verdict == IMPROVED and c.change == pytest.approx(0.20, abs=0.01), c
    assert 0 < c.ci_low < c.ci_high and c.p_value < 0.001, c


def test_high_noise_is_inconclusive():
    base = lognormal_quantiles(8, 1000.0, 0.6)
    cand = [0.8 * x for x in base]  # exactly 20% slower, but the run-to-run spread swamps it
    c = compare_samples(base, cand, higher_is_better=True)
    assert c.verdict == INCONCLUSIVE and "includes no change" in c.note
    assert c.change == pytest.approx(-0.20) and c.p_value > 0.3 and c.ci_low < 0 < c.ci_high, c


def test_direction_follows_the_metric():
    fast, slow = lognormal(8, 0.010, 0.005, seed=1), lognormal(8, 0.012, 0.005, seed=2)
    # step time up 20%
    assert compare_samples(fast, slow, higher_is_better=False).verdict == REGRESSED
    assert compare_samples(slow, fast, higher_is_better=False).verdict == IMPROVED


def test_significant_but_small_change_is_unchanged():
    base = lognormal(8, 1000.0, 0.002, seed=1)
    cand = lognormal(8, 980.0, 0.002, seed=2)  # -2%: provable, but under the 5% threshold
    c = compare_samples(base, cand, higher_is_better=True)
    assert c.verdict == UNCHANGED and c.p_value < 0.01 and "within ±5%" in c.note, c
    assert c.ci_high < 0, c


def test_too_few_runs_for_alpha_are_inconclusive():
    for n in (1, 3, 4):  # 4 vs 4 cannot reach alpha 0.01 either (smallest p = 2/70)
        c = compare_samples([1000.0] * n, [500.0] * n, higher_is_better=True)
        assert c.verdict == INCONCLUSIVE and c.p_value is None and c.ci_low is None, c
        assert f"too few runs for a test at alpha 0.01 ({n} vs {n}; need 5 per side)" in c.note
    # A looser alpha needs fewer runs: 4 per side reach 0.05.
    c = compare_samples(
        lognormal(4, 1000, 0.01, 1), lognormal(4, 500, 0.01, 2), True, Thresholds(0.05)
    )
    assert c.verdict == REGRESSED and c.p_value < 0.05, c
    # The minimum is a setting too: 5 vs 5 reach alpha 0.01, but not --min-samples 6.
    five_b, five_c = lognormal(5, 1000, 0.01, 1), lognormal(5, 500, 0.01, 2)
    assert compare_samples(five_b, five_c, True).verdict == REGRESSED
    c = compare_samples(five_b, five_c, True, Thresholds(min_samples=6))
    assert c.verdict == INCONCLUSIVE and "need 6 per side" in c.note


def test_deterministic_metrics_use_the_threshold_alone_below_the_runs_needed():
    # Peak memory, one value per run: +20% with one run each is a regression on the threshold alone.
    c = compare_samples([1000.0], [1200.0], higher_is_better=False, deterministic=True)
    assert c.verdict == REGRESSED and c.p_value is None and "threshold only (1 vs 1 runs" in c.note
    assert compare_samples([1000.0], [1030.0], False, deterministic=True).verdict == UNCHANGED
    # The same numbers as a timing figure: never on the threshold alone.
    assert compare_samples([1000.0], [1200.0], False).verdict == INCONCLUSIVE
    # Repeats that already disagree by more than the threshold: no verdict.
    c = compare_samples([1000.0, 1200.0], [1300.0, 1310.0], False, deterministic=True)
    assert c.verdict == INCONCLUSIVE and "spread" in c.note


def test_not_available_and_non_positive_reference():
    assert compare_samples(None, [1.0], True).verdict == NOT_AVAILABLE
    assert compare_samples([], [], True).note == "not recorded on either side"
    c = compare_samples([-0.01], [0.02], False, deterministic=True)  # excess loss below the floor
    assert c.verdict == INCONCLUSIVE and c.change is None


def test_all_tied_runs_are_unchanged_not_nan():
    c = compare_samples([5.0] * 8, [5.0] * 8, True)
    assert c.verdict == UNCHANGED and c.p_value == 1.0 and c.ci_low == c.ci_high == 0.0


def test_exit_code_precedence():
    assert exit_code([UNCHANGED, IMPROVED, NOT_AVAILABLE]) == EXIT_OK
    assert exit_code([UNCHANGED, INCONCLUSIVE]) == EXIT_INCONCLUSIVE
    assert exit_code([INCONCLUSIVE, REGRESSED, IMPROVED]) == EXIT_REGRESSED
    assert exit_code([INCONCLUSIVE, FAILED]) == EXIT_REGRESSED


# ------------------------------------------------------------------------------------------------
# The run, not the step, is the unit


def pooled_steps(records: list[dict[str, Any]]) -> list[float]:
    """Every step's tokens/s of every run, pooled: the samples the rule must not treat as
    independent."""
    return [
        TOKENS_PER_STEP / s
        for r in records
        for window in r["timing"]["window_step_times_s"]
        for s in window
    ]


def test_correlated_steps_do_not_fake_a_significant_change():
    # Identical code, 8 runs per side, each run 6% off on its own and its 30 steps close to it.
    base = runs(8, 10_000.0, 0.06, seed=27)
    cand = runs(8, 10_000.0, 0.06, seed=127)
    steps_b, steps_c = pooled_steps(base), pooled_steps(cand)
    pooled_change = float(np.median(steps_c) / np.median(steps_b) - 1)
    # Pooled steps, taken as independent, call a significant change larger than the threshold ...
    assert mannwhitneyu(steps_c, steps_b).pvalue < 1e-6 and abs(pooled_change) > 0.05
    # ... the runs do not.
    (result,) = compare_runs(base, cand).results
    c = result.comparison
    assert (c.n_baseline, c.n_candidate) == (8, 8)
    assert c.verdict in (UNCHANGED, INCONCLUSIVE) and c.ci_low < 0 < c.ci_high, c


def test_a_shift_of_every_run_still_regresses():
    offsets = lognormal(8, 10_000.0, 0.01, seed=3)
    base = runs_at(offsets, seed=1)
    cand = runs_at([0.85 * x for x in offsets], seed=2)  # -15% on every run
    (result,) = compare_runs(base, cand).results
    c = result.comparison
    assert c.verdict == REGRESSED and c.change == pytest.approx(-0.15, abs=0.01), c
    assert (c.n_baseline, c.n_candidate) == (8, 8) and c.ci_high < -0.05, c
    # Five runs per side are enough at alpha 0.01.
    (result,) = compare_runs(base[:5], cand[:5]).results
    assert result.comparison.verdict == REGRESSED and result.comparison.p_value < 0.01


def test_each_repeat_is_one_run():
    base = runs(6, 10_000.0, 0.005, seed=1, steps=40)
    cand = runs(6, 8_000.0, 0.005, seed=2, steps=40)
    (result,) = compare_runs(base, cand).results
    assert (result.comparison.n_baseline, result.comparison.n_candidate) == (6, 6)
    assert result.comparison.verdict == REGRESSED
    # the run's estimate is its record's tokens/s (tokens over measured time), not a step's
    expected = float(np.median([r["metrics"]["tokens_per_s"] for r in base]))
    assert result.comparison.median_baseline == pytest.approx(expected)
    # A single run of 60 steps is one sample: no test.
    (result,) = compare_runs([record(STEADY)], [record(lognormal(60, 8_000.0, 0.02, 3))]).results
    assert result.comparison.verdict == INCONCLUSIVE and result.comparison.n_baseline == 1


# ------------------------------------------------------------------------------------------------
# The CLI on synthetic records


def compare_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["compare", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def steady(n: int = 8, seed: int = 1, **record_kw: Any) -> list[dict[str, Any]]:
    """n runs of a steady 10,000 tokens/s cell: 0.5% from run to run."""
    return runs(n, 10_000.0, 0.005, seed, **record_kw)


def test_cli_regression_exit_1_and_speedup_exit_0(tmp_path, capsys):
    base = write(tmp_path / "base.jsonl", steady())
    slow = write(tmp_path / "slow.jsonl", runs(8, 8_000.0, 0.005, seed=12))
    fast = write(tmp_path / "fast.jsonl", runs(8, 12_000.0, 0.005, seed=13))
    code, out, _ = compare_cli(capsys, str(base), str(slow))
    assert code == EXIT_REGRESSED and re.search(r" -(19|20|21)\.\d% ", out), out
    assert re.search(r"regressed +CI \[-2\d\.\d%, -(19|20)\.\d%\] excludes no change", out), out
    assert " 8/8 " in out
    code, out, _ = compare_cli(capsys, str(base), str(fast))
    assert code == EXIT_OK and "improved" in out and "hlbench compare: improved (exit 0)" in out


def test_cli_identical_distributions_exit_0(tmp_path, capsys):
    base = write(tmp_path / "base.jsonl", steady())
    same = write(tmp_path / "same.jsonl", steady(seed=12))
    code, out, _ = compare_cli(capsys, str(base), str(same))
    assert code == EXIT_OK and "1 unchanged" in out, out


def test_cli_high_noise_exit_3(tmp_path, capsys):
    noisy = lognormal_quantiles(8, 10_000.0, 0.6)
    base = write(tmp_path / "base.jsonl", runs_at(noisy, seed=1))
    cand = write(tmp_path / "cand.jsonl", runs_at([0.8 * x for x in noisy], seed=2))
    code, out, _ = compare_cli(capsys, str(base), str(cand))
    assert code == EXIT_INCONCLUSIVE and "inconclusive" in out


def test_cli_too_few_runs_exit_3(tmp_path, capsys):
    base = write(tmp_path / "base.jsonl", [record(STEADY)])
    cand = write(tmp_path / "cand.jsonl", [record(lognormal(60, 8_000.0, 0.02, seed=12))])
    code, out, _ = compare_cli(capsys, str(base), str(cand))
    assert code == EXIT_INCONCLUSIVE and "too few runs" in out and " 1/1 " in out, out


def test_cli_different_gpu_model_exit_2_naming_the_field(tmp_path, capsys):
    base = write(tmp_path / "base.jsonl", steady(gpus=[A100]))
    cand = write(tmp_path / "cand.jsonl", steady(seed=2, gpus=[H200]))
    code, out, err = compare_cli(capsys, str(base), str(cand))
    assert code == EXIT_INCOMPARABLE
    assert f"gpu_models: baseline '{A100}' vs candidate '{H200}'" in err
    assert "gpu_models" in out and "--force" in out and "tokens/s" not in out  # refused: no table
    # --force compares anyway and keeps the difference in the report as a warning.
    code, out, _ = compare_cli(capsys, str(base), str(cand), "--force")
    assert code == EXIT_OK and "WARNING: compared anyway" in out and "gpu_models" in out


@pytest.mark.parametrize(
    "base_kw, cand_kw, field",
    [
        (
            {"driver": "535.129.03"},
            {"driver": "550.54.15"},
            "driver_major: baseline '535' vs candidate '550'",
        ),
        (
            {"torch_version": "2.4.0+cu124"},
            {},
            "torch_version: baseline '2.4.0+cu124' vs candidate '2.5.1+cu124'",
        ),
        (
            {"schema_version": 1},
            {"schema_version": 2},
            "schema_version: baseline '1' vs candidate '2'",
        ),
        ({"gpus": [H200]}, {"gpus": [H200, H200]}, "gpu_models"),
        (
            {"gpus": [], "cpu_model": "AMD EPYC"},
            {"gpus": [], "cpu_model": "Intel Xeon"},
            "cpu_model",
        ),
        (
            {},
            {"seq_len": 256, "cell_hash": "bbbbbbbbbbbbbbbb"},
            "workload definition of gpt-small/torch/fp32/ga1/none: hash aaaaaaaaaaaaaaaa vs "
            "bbbbbbbbbbbbbbbb (workload.seq_len 128 vs 256)",
        ),
    ],
)
def test_cli_incomparable_environments(tmp_path, capsys, base_kw, cand_kw, field):
    base = write(tmp_path / "base.jsonl", [record(STEADY, **base_kw)])
    cand = write(tmp_path / "cand.jsonl", [record(STEADY, **cand_kw)])
    code, _, err = compare_cli(capsys, str(base), str(cand))
    assert code == EXIT_INCOMPARABLE and field in err, err


def test_comparable_differences_do_not_refuse(tmp_path, capsys):
    # Same driver major (a minor update), another host CPU next to the same GPU, an unknown driver.
    base = write(tmp_path / "base.jsonl", steady(driver="550.54.15", cpu_model="AMD EPYC 9654"))
    cand = write(
        tmp_path / "cand.jsonl", steady(seed=2, driver="550.90.07", cpu_model="Intel Xeon 8480")
    )
    code, out, _ = compare_cli(capsys, str(base), str(cand))
    assert code == EXIT_OK and "not comparable" not in out
    unknown = write(tmp_path / "unknown.jsonl", steady(seed=3, driver=None))
    code, out, _ = compare_cli(capsys, str(base), str(unknown))
    assert (
        code == EXIT_OK
        and "could not check" in out
        and "driver_major: baseline '550' vs candidate unknown" in out
    )


def test_cell_missing_on_one_side_is_listed_not_fatal(tmp_path, capsys):
    a, b, c = (
        ("gpt-small/torch/fp32/ga1/none", "a" * 16),
        ("gpt-small/torch/fp32/ga4/none", "b" * 16),
        ("gpt-small/torch/bf16/ga1/none", "c" * 16),
    )
    base = write(
        tmp_path / "base.jsonl", [r for i, h in (a, b) for r in steady(cell_id=i, cell_hash=h)]
    )
    cand = write(
        tmp_path / "cand.jsonl",
        [r for i, h in (a, c) for r in steady(seed=2, cell_id=i, cell_hash=h)],
    )
    code, out, _ = compare_cli(capsys, str(base), str(cand), "--format", "json")
    report = json.loads(out)
    assert code == EXIT_OK and report["verdict"] == UNCHANGED
    assert report["only_baseline"] == [{"cell_id": b[0], "cell_hash": b[1]}]
    assert report["only_candidate"] == [{"cell_id": c[0], "cell_hash": c[1]}]
    assert [r["cell_id"] for r in report["results"]] == [a[0]]
    code, out, _ = compare_cli(capsys, str(base), str(cand))
    assert (
        f"only in the baseline (not compared):\n- {b[0]}" in out
        and f"only in the candidate (not compared):\n- {c[0]}" in out
    )


def test_no_common_cell_is_exit_2(tmp_path, capsys):
    base = write(
        tmp_path / "base.jsonl",
        [record(STEADY, cell_hash="a" * 16, cell_id="x/torch/fp32/ga1/none")],
    )
    cand = write(
        tmp_path / "cand.jsonl",
        [record(STEADY, cell_hash="b" * 16, cell_id="y/torch/fp32/ga1/none")],
    )
    code, _, err = compare_cli(capsys, str(base), str(cand))
    assert code == EXIT_INCOMPARABLE and "no cell is common" in err


def test_failed_candidate_cell_is_a_regression(tmp_path, capsys):
    base = write(tmp_path / "base.jsonl", steady())
    cand = write(tmp_path / "cand.jsonl", [record(None, status="oom")])
    code, out, _ = compare_cli(capsys, str(base), str(cand))
    assert code == EXIT_REGRESSED and "failed" in out and "candidate oom: oom in test" in out


def test_last_record_per_repeat_wins_and_parity_records_are_ignored(tmp_path, capsys):
    base = write(tmp_path / "base.jsonl", steady())
    slow = runs(8, 8_000.0, 0.005, seed=5)
    # Repeat 0 crashed, then its resumed ok record came; a parity record in between.
    cand = write(
        tmp_path / "cand.jsonl",
        [record(None, status="crashed"), {"kind": "parity", "cell_hash": "a" * 16}, *slow],
    )
    code, out, _ = compare_cli(capsys, str(base), str(cand), "--format", "json")
    (result,) = json.loads(out)["results"]
    assert code == EXIT_REGRESSED and result["verdict"] == REGRESSED and result["n_candidate"] == 8
    assert len(current_records(json.loads(line) for line in cand.read_text().splitlines())) == 8
    # The other way round, the crash written last: repeat 0 failed, the 7 other runs remain.
    write(cand, [*slow, record(None, status="crashed")])
    code, out, _ = compare_cli(capsys, str(base), str(cand), "--format", "json")
    (result,) = json.loads(out)["results"]
    assert result["verdict"] == REGRESSED and result["n_candidate"] == 7


def test_metric_not_available_is_not_a_crash(tmp_path, capsys):
    base = write(tmp_path / "base.jsonl", steady())
    cand = write(tmp_path / "cand.jsonl", steady(seed=2))
    # telemetry is null: energy is not available; alone it leaves nothing to compare (exit 2) ...
    code, out, err = compare_cli(capsys, str(base), str(cand), "--metric", "energy_j_per_token")
    assert (
        code == EXIT_INCOMPARABLE
        and "energy_j_per_token" in err
        and "not recorded on either side" in out
    )
    # ... next to a metric that is there, it is listed and does not decide.
    code, out, _ = compare_cli(
        capsys, str(base), str(cand), "--metric", "tokens_per_s", "--metric", "energy_j_per_token"
    )
    assert code == EXIT_OK and "not available" in out


def with_gpu_telemetry(rec: dict[str, Any], power_w: float, samples_csv: Path) -> dict[str, Any]:
    """The record with the `telemetry` section hlbench's telemetry writer (Collector.finish) makes
    from NVML samples of a GPU drawing `power_w` through two measured windows of 2 s each."""
    rec["timing"]["window_monotonic_s"] = [[100.0, 102.0], [102.0, 104.0]]
    rows = with_gpu(ticks(99.0, 105.0, 0.1), power_w=power_w)
    rec["telemetry"] = telemetry_section(rows, rec, samples_csv)
    return rec


def gpu_runs(
    tmp_path: Path, name: str, power_w: float, n: int = 5, **record_kw: Any
) -> list[dict[str, Any]]:
    """n runs of 60 steps each, every one with the telemetry of a GPU drawing power_w."""
    return [
        with_gpu_telemetry(rec, power_w, tmp_path / f"{name}-{rec['repeat']}.csv")
        for rec in runs(n, 10_000.0, 0.005, seed=len(name), steps=60, **record_kw)
    ]


def test_energy_from_the_telemetry_writer_is_compared(tmp_path, capsys):
    # 4 s of measured windows at 320 W → 1280 J; at 268.8 W → 1075.2 J (0.07 J per token of 60 ×
    # 256)
    base, cand = gpu_runs(tmp_path, "base", 320.0), gpu_runs(tmp_path, "cand", 268.8)
    # where the writer puts it
    assert base[0]["telemetry"]["derived"]["gpu_energy_j"] == pytest.approx(1280.0)
    write(tmp_path / "base.jsonl", base)
    write(tmp_path / "cand.jsonl", cand)
    code, out, _ = compare_cli(
        capsys,
        str(tmp_path / "base.jsonl"),
        str(tmp_path / "cand.jsonl"),
        "--metric",
        "energy_j_per_token",
        "--format",
        "json",
    )
    (energy,) = json.loads(out)["results"]
    assert energy["verdict"] == IMPROVED and (energy["n_baseline"], energy["n_candidate"]) == (5, 5)
    assert energy["median_baseline"] == pytest.approx(1280.0 / (60 * TOKENS_PER_STEP))
    assert energy["median_candidate"] == pytest.approx(0.07) and code == EXIT_OK


def test_energy_and_memory_metrics_when_recorded(tmp_path, capsys):
    base = write(tmp_path / "base.jsonl", gpu_runs(tmp_path, "base", 320.0, peak_bytes=2**30))
    cand = write(
        tmp_path / "cand.jsonl",
        gpu_runs(tmp_path, "cand", 268.8, peak_bytes=int(1.2 * 2**30)),
    )
    code, out, _ = compare_cli(capsys, str(base), str(cand), "--metric", "all", "--format", "json")
    by_metric = {r["metric"]: r for r in json.loads(out)["results"]}
    assert set(by_metric) == set(METRICS)
    memory = by_metric["peak_memory_bytes"]
    assert memory["verdict"] == REGRESSED and memory["change"] == pytest.approx(0.2, abs=1e-6)
    energy = by_metric["energy_j_per_token"]
    assert (
        energy["median_baseline"] == pytest.approx(1280.0 / (60 * TOKENS_PER_STEP))
        and energy["verdict"] == IMPROVED
    )
    assert by_metric["tokens_per_s"]["verdict"] == UNCHANGED
    assert code == EXIT_REGRESSED
    # One run a side: peak memory (deterministic) on the threshold alone, tokens/s no test.
    write(base, [json.loads(base.read_text().splitlines()[0])])
    write(cand, [json.loads(cand.read_text().splitlines()[0])])
    code, out, _ = compare_cli(capsys, str(base), str(cand), "--metric", "all", "--format", "json")
    by_metric = {r["metric"]: r for r in json.loads(out)["results"]}
    assert by_metric["peak_memory_bytes"]["verdict"] == REGRESSED
    assert "threshold only (1 vs 1 runs" in by_metric["peak_memory_bytes"]["note"]
    assert by_metric["tokens_per_s"]["verdict"] == INCONCLUSIVE and code == EXIT_REGRESSED


def test_markdown_for_a_pull_request(tmp_path, capsys):
    base = write(tmp_path / "base.jsonl", steady())
    cand = write(tmp_path / "cand.jsonl", runs(8, 8_000.0, 0.005, seed=12))
    out_md = tmp_path / "out" / "compare.md"
    code, printed, _ = compare_cli(
        capsys, str(base), str(cand), "--format", "md", "-o", str(out_md)
    )
    md = out_md.read_text()
    assert code == EXIT_REGRESSED and printed == ""
    assert md.startswith("<!-- hlbench-compare -->\n### hlbench compare: **regressed** (exit 1)")
    assert (
        "| cell | metric | baseline | candidate | change | CI | p | runs | verdict | note |" in md
    )
    assert (
        "| gpt-small/torch/fp32/ga1/none | tokens/s | 10,015 | 8,004 | -20.1% | [-20.6%, -19.3%] | "
        "0.00016 | 8/8 | regressed | CI [-20.6%, -19.3%] excludes no change, \\|change\\| > 5% |"
        in md
    ), md


GOLDEN = REPO / "tests" / "data" / "compare"
GOLDEN_CELLS = [
    ("gpt-small/torch/fp32/ga1/none", "a" * 16),  # regressed
    ("gpt-small/torch/bf16/ga1/none", "b" * 16),  # improved
    ("gpt-small/torch/fp32/ga4/none", "c" * 16),  # too noisy: inconclusive
    ("gpt-small/torch/bf16/ga4/none", "d" * 16),  # only in the baseline
    ("gpt-small/torch/fp32/ga2/none", "f" * 16),  # 3 runs a side; peak memory +20%
]


def golden_runs(tmp_path: Path) -> None:
    """base.jsonl and cand.jsonl in tmp_path, one cell of each kind of outcome."""
    noisy = lognormal_quantiles(8, 9_000.0, 0.6)
    cell = {name: {"cell_id": i, "cell_hash": h} for name, (i, h) in zip("abcdf", GOLDEN_CELLS)}
    write(
        tmp_path / "base.jsonl",
        [
            *runs(8, 10_000.0, 0.005, seed=1, **cell["a"]),
            *runs(8, 10_000.0, 0.005, seed=2, **cell["b"]),
            *runs_at(noisy, seed=3, **cell["c"]),
            *runs(8, 10_000.0, 0.005, seed=4, **cell["d"]),
            *runs(3, 10_000.0, 0.005, seed=5, **cell["f"]),
        ],
    )
    e = {"cell_id": "gpt-small/torch/fp16/ga1/none", "cell_hash": "e" * 16}
    write(
        tmp_path / "cand.jsonl",
        [
            *runs(8, 8_000.0, 0.005, seed=11, driver=None, **cell["a"]),
            *runs(8, 12_000.0, 0.005, seed=12, driver=None, **cell["b"]),
            *runs_at([0.8 * x for x in noisy], seed=13, driver=None, **cell["c"]),
            *runs(8, 10_000.0, 0.005, seed=14, driver=None, **e),
            *runs(3, 10_000.0, 0.005, 15, driver=None, peak_bytes=int(1.2 * 2**30), **cell["f"]),
        ],
    )


@pytest.mark.parametrize("fmt", ["md", "text"])
def test_golden_output(tmp_path, capsys, monkeypatch, fmt):
    """The whole report for a mixed case, byte for byte (HLBENCH_UPDATE_GOLDEN=1 rewrites it)."""
    monkeypatch.chdir(tmp_path)
    golden_runs(Path("."))
    code, out, _ = compare_cli(
        capsys,
        "base.jsonl",
        "cand.jsonl",
        "--format",
        fmt,
        "--metric",
        "tokens_per_s",
        "--metric",
        "peak_memory_bytes",
    )
    assert code == EXIT_REGRESSED
    golden = GOLDEN / f"mixed.{fmt}"
    if os.environ.get("HLBENCH_UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(out)
    assert out == golden.read_text()


def test_golden_cases_as_json(tmp_path, capsys):
    """The verdicts behind the golden report, field by field."""
    golden_runs(tmp_path)
    args = ["--metric", "tokens_per_s", "--metric", "peak_memory_bytes", "--format", "json"]
    code, out, _ = compare_cli(
        capsys, str(tmp_path / "base.jsonl"), str(tmp_path / "cand.jsonl"), *args
    )
    report = json.loads(out)
    got = {(r["cell_hash"][0], r["metric"]): r for r in report["results"]}
    assert report["schema"] == "hlbench-compare/2" and report["runs_needed"] == 5
    assert report["baseline_run_ids"] == report["candidate_run_ids"] == ["r"]
    assert report["noise"] is None and report["notes"] == [] and code == EXIT_REGRESSED
    verdicts = {k[0]: r["verdict"] for k, r in got.items() if k[1] == "tokens_per_s"}
    assert verdicts == {"a": REGRESSED, "b": IMPROVED, "c": INCONCLUSIVE, "f": INCONCLUSIVE}
    memory = got[("f", "peak_memory_bytes")]
    assert memory["verdict"] == REGRESSED and memory["p_value"] is None
    assert memory["ci_low"] is None and "threshold only (3 vs 3 runs" in memory["note"]
    assert (
        got[("a", "tokens_per_s")]["ci_high"] < -0.05
        and got[("a", "tokens_per_s")]["noise_floor"] is None
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--threshold", "5"], "expected a fraction"),
        (["--metric", "speed"], "--metric speed: unknown"),
        (["--alpha", "2"], "--alpha 2.0"),
        (["--min-samples", "1"], "--min-samples 1: expected at least 2"),
    ],
)
def test_usage_errors_exit_2(tmp_path, capsys, args, message):
    base = write(tmp_path / "base.jsonl", [record(STEADY)])
    try:
        code = main(["compare", str(base), str(base), *args])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    assert code == 2 and message in capsys.readouterr().err


def test_three_paths_without_calibrate_is_a_usage_error(tmp_path, capsys):
    base = write(tmp_path / "base.jsonl", [record(STEADY)])
    code, _, err = compare_cli(capsys, str(base), str(base), str(base))
    assert code == 2 and "3 path(s) given" in err and "--calibrate" in err


def test_threshold_accepts_percent(tmp_path, capsys):
    base = write(tmp_path / "base.jsonl", steady())
    cand = write(tmp_path / "cand.jsonl", runs(8, 9_000.0, 0.005, seed=12))  # -10%
    assert compare_cli(capsys, str(base), str(cand), "--threshold", "15%")[0] == EXIT_OK
    assert compare_cli(capsys, str(base), str(cand), "--threshold", "0.05")[0] == EXIT_REGRESSED


def test_run_directory_and_missing_paths(tmp_path, capsys):
    run_dir = tmp_path / "run"
    (run_dir / "e2e" / "r1.logs").mkdir(parents=True)
    write(run_dir / "e2e" / "r1.jsonl", steady(run_id="r1"))
    # a records-shaped file among a run's logs is not a run
    write(run_dir / "e2e" / "r1.logs" / "ignored.jsonl", steady(run_id="ghost"))
    code, _, err = compare_cli(capsys, str(run_dir), str(run_dir))
    assert code == EXIT_OK and "ghost" not in err and "note" not in err, err
    # A second records file: a second run; the latest is used and the choice is said.
    write(run_dir / "e2e" / "r2.jsonl", steady(seed=2, run_id="r2"))
    code, out, err = compare_cli(capsys, str(run_dir), str(run_dir))
    assert code == EXIT_OK and "holds 2 runs (r1, r2); using the latest, r2" in err, err
    assert "(run r2)" in out
    code, _, err = compare_cli(capsys, str(tmp_path / "nope.jsonl"), str(run_dir))
    assert code == 2 and "no such records file or run directory" in err


def test_environment_summary_ignores_records_without_a_worker():
    skipped = record(None, status="skipped")
    skipped["env"]["framework"] = None
    env = environment([record(STEADY), skipped])
    assert env["gpu_models"] == [H200] and env["torch_version"] == ["2.5.1+cu124"]
    assert not environment_differences(env, env).fatal


def test_compare_imports_no_framework(tmp_path):
    path = write(tmp_path / "r.jsonl", steady())
    code = (
        "import sys; from hlbench.cli import main; rc = main(['compare', sys.argv[1], "
        "sys.argv[1], '--metric', 'all']);bad = [m for m in ('torch', 'tensorflow') if m in "
        "sys.modules]; assert not bad, bad; sys.exit(rc)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ------------------------------------------------------------------------------------------------
# End to end on the CPU: a real slowdown through the documented test-only hook

E2E_REPEATS = 5  # the fewest runs per side that reach alpha 0.01
TINY_SUITE = suite_yaml(
    name="e2e",
    device="cpu",
    backends=["torch"],
    workloads=[{"model": "gpt", "size": "tiny", "seq_len": 16, "batch_size": 4}],
    axes={"precision": ["fp32"], "accumulation": [1]},
    measurement={
        "warmup_steps": 1,
        "steps": 4,
        "windows": 2,
        "repeats": E2E_REPEATS,
        "budget_s": 30,
        "timeout_s": 120,
        "eval_batches": 1,
    },
)
DELAY_S = 0.05  # several times a tiny step on these CPUs: far above noise, so the test cannot flake
TOKENS_PER_STEP_E2E = 4 * 16  # batch_size × seq_len of TINY_SUITE


def e2e_run(suite: Path, name: str, delay_s: float | None, cwd: Path, env: dict[str, str]) -> Path:
    """`hlbench run` of the suite into results dir `name`; its records file."""
    run_env = {**env, "HLBENCH_TEST_STEP_DELAY_S": str(delay_s)} if delay_s else env
    proc = run_cli(
        "run", str(suite), "--quiet", "--results-dir", name, cwd=cwd, env=run_env, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (records,) = (cwd / name / "e2e").glob("*.jsonl")
    return records


@pytest.mark.slow
def test_end_to_end_slowdown_is_detected(write_suite, tmp_path):
    pytest.importorskip("torch")
    suite = write_suite(TINY_SUITE)
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",  # the cores are shared: keep torch to one thread
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    env.pop("HLBENCH_TEST_STEP_DELAY_S", None)
    base = e2e_run(suite, "base", None, tmp_path, env)
    slow = e2e_run(suite, "slow", DELAY_S, tmp_path, env)

    # Promote the first run, then compare the slowed one against the stored baseline.
    proc = run_cli("baseline", "save", str(base), "--dir", "baselines", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    proc = run_cli(
        "baseline", "name", str(slow), "--dir", "baselines", "--path", cwd=tmp_path, env=env
    )
    baseline_dir = tmp_path / proc.stdout.strip()
    assert baseline_dir.is_dir(), proc.stdout + proc.stderr

    proc = run_cli(
        "compare", str(baseline_dir), str(slow), "--format", "json", cwd=tmp_path, env=env
    )
    assert proc.returncode == EXIT_REGRESSED, proc.stdout + proc.stderr
    (result,) = json.loads(proc.stdout)["results"]
    assert result["verdict"] == REGRESSED
    assert result["n_baseline"] == result["n_candidate"] == E2E_REPEATS
    # Each step got DELAY_S longer. A run's tokens/s is tokens over its measured time, so
    # TOKENS_PER_STEP_E2E / (median tokens/s) is a typical run's mean step time: it rose by at
    # least the delay, less noise.
    base_step_s = TOKENS_PER_STEP_E2E / result["median_baseline"]
    slow_step_s = TOKENS_PER_STEP_E2E / result["median_candidate"]
    assert slow_step_s - base_step_s > 0.8 * DELAY_S, (base_step_s, slow_step_s)
    assert result["change"] < -0.3 and result["ci_high"] < -0.3 and result["p_value"] < 0.01
    print(
        f"e2e: step {base_step_s * 1e3:.1f} ms → {slow_step_s * 1e3:.1f} ms, tokens/s change "
        f"{result['change']:+.1%}, CI [{result['ci_low']:+.1%}, {result['ci_high']:+.1%}], "
        f"p = {result['p_value']:.2g}"
    )
