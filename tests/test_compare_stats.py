"""The pieces under `hlbench compare`'s rule: exact Mann–Whitney statistics over a few runs, the
runner's noise floor (A/A calibration, stored with a baseline and applied), and which runs of an
input are compared when a records file or directory holds several."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from scipy.stats import mannwhitneyu

from hlbench.cli import main
from hlbench.comparison import noise, stats
from hlbench.comparison.inputs import load_run, split_runs
from hlbench.comparison.runs import compare_runs
from hlbench.comparison.verdicts import (
    EXIT_OK,
    EXIT_REGRESSED,
    INCONCLUSIVE,
    REGRESSED,
    UNCHANGED,
    Thresholds,
    compare_samples,
)
from hlbench.errors import UsageError
from tests.helpers import lognormal, runs, write


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


# ------------------------------------------------------------------------------------------------
# Exact statistics over runs


@pytest.mark.parametrize("n, m", [(1, 1), (2, 3), (3, 3), (4, 6), (5, 5), (8, 8)])
def test_u_counts_cover_every_ordering(n: int, m: int):
    counts = stats.u_counts(n, m)
    assert len(counts) == n * m + 1 and sum(counts) == math.comb(n + m, n)
    assert counts == counts[::-1] and min(counts) >= 1  # symmetric, every U reachable
    assert stats.lower_tail(n, m, n * m) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "x, y",
    [
        ([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]),
        ([1.0, 4.0, 6.0, 9.0], [2.0, 3.0, 5.0, 7.0, 8.0]),
        ([0.3, 1.7, 2.2, 5.1, 0.9], [3.3, 4.4, 2.5, 6.0, 1.1]),
        ([10.0, 11.5, 9.7, 10.2, 10.9, 11.1], [12.0, 9.9, 12.5, 13.0, 11.8, 12.2]),
    ],
)
def test_exact_p_matches_scipy(x: list[float], y: list[float]):
    expected = mannwhitneyu(y, x, alternative="two-sided", method="exact").pvalue
    u = sum(b > a for a in x for b in y)  # U of the candidate y over the baseline x
    tail = min(
        stats.lower_tail(len(x), len(y), u), stats.lower_tail(len(x), len(y), len(x) * len(y) - u)
    )
    assert min(1.0, 2 * tail) == pytest.approx(expected, rel=1e-12)
    assert stats.p_value(x, y) == pytest.approx(expected, rel=1e-12)


def test_smallest_p_and_fewest_runs():
    assert stats.smallest_p(3, 3) == pytest.approx(0.1)
    assert stats.smallest_p(5, 5) == pytest.approx(2 / 252)
    assert not stats.can_reach(3, 3, 0.05) and not stats.can_reach(4, 4, 0.01)
    assert stats.can_reach(4, 4, 0.05) and stats.can_reach(5, 5, 0.01)
    assert not stats.can_reach(0, 8, 0.5)
    assert stats.fewest_runs(0.01) == 5 and stats.fewest_runs(0.05) == 4
    assert (
        Thresholds(alpha=0.05).runs_needed() == 4 and Thresholds(min_samples=7).runs_needed() == 7
    )


def test_interval_is_none_where_alpha_cannot_be_reached():
    assert stats.interval([1.0, 2.0, 3.0], [4.0, 5.0, 6.0], 0.01) is None
    assert stats.interval([1.0], [2.0], 0.05) is None


def test_interval_of_five_vs_five_at_alpha_001_spans_every_pairwise_difference():
    x, y = [1.0, 2.0, 4.0, 7.0, 11.0], [3.0, 5.0, 6.0, 10.0, 20.0]
    diffs = [b - a for a in x for b in y]
    assert stats.interval(x, y, 0.01) == (min(diffs), max(diffs))
    # More runs: inner order statistics, narrower than the extremes, still around the estimate.
    x8, y8 = lognormal(8, 1.0, 0.1, seed=1), lognormal(8, 1.5, 0.1, seed=2)
    lo, hi = stats.interval(x8, y8, 0.01)
    diffs8 = sorted(b - a for a in x8 for b in y8)
    assert diffs8[0] < lo < stats.hodges_lehmann(x8, y8) < hi < diffs8[-1]


def test_hodges_lehmann_is_the_median_pairwise_difference():
    assert stats.hodges_lehmann([0.0, 1.0], [10.0, 12.0]) == pytest.approx(10.5)
    assert stats.hodges_lehmann([0.0], [3.0, 5.0, 100.0]) == 5.0


# ------------------------------------------------------------------------------------------------
# The noise floor in the verdict

BASE = lognormal(8, 1000.0, 0.005, seed=1)


def test_a_change_below_the_noise_floor_is_inconclusive():
    slower = [0.9 * x for x in lognormal(8, 1000.0, 0.005, seed=2)]  # -10%, plainly significant
    assert compare_samples(BASE, slower, True).verdict == REGRESSED
    c = compare_samples(BASE, slower, True, noise_floor=0.15)
    assert c.verdict == INCONCLUSIVE and "below this runner's noise floor (15.0%)" in c.note, c
    assert c.noise_floor == 0.15 and c.ci_high < 0  # the CI is reported before the floor
    c = compare_samples(BASE, slower, True, noise_floor=0.04)  # a change larger than the floor
    assert c.verdict == REGRESSED and "the noise floor 4.0%" in c.note, c


def test_a_floor_wider_than_the_threshold_never_gives_unchanged():
    same = lognormal(8, 1000.0, 0.005, seed=3)
    assert compare_samples(BASE, same, True, noise_floor=0.01).verdict == UNCHANGED
    c = compare_samples(BASE, same, True, noise_floor=0.08)
    assert c.verdict == INCONCLUSIVE and "noise floor (8.0%) is above the 5% threshold" in c.note
    for cand in ([x * 1.02 for x in same], [x * 0.97 for x in same], BASE):
        assert compare_samples(BASE, cand, True, noise_floor=0.06).verdict != UNCHANGED


def test_compare_runs_applies_the_floor_of_its_cell_and_metric():
    base = runs(8, 10_000.0, 0.005, seed=1)
    cand = runs(8, 9_000.0, 0.005, seed=2)
    cell = base[0]["cell_hash"]
    (r,) = compare_runs(base, cand, floors={(cell, "tokens_per_s"): 0.2}).results
    assert r.comparison.verdict == INCONCLUSIVE and r.comparison.noise_floor == 0.2
    (r,) = compare_runs(base, cand, floors={(cell, "step_time_s"): 0.2}).results
    assert r.comparison.verdict == REGRESSED and r.comparison.noise_floor is None


# ------------------------------------------------------------------------------------------------
# Calibration from A/A runs

AA_SPEEDS = {"aa1": 10_000.0, "aa2": 10_300.0, "aa3": 9_900.0}  # three runs of unchanged code


def aa_records(**record_kw: Any) -> list[dict[str, Any]]:
    return [
        r
        for i, (rid, speed) in enumerate(AA_SPEEDS.items())
        for r in runs(5, speed, 0.002, seed=i + 1, run_id=rid, **record_kw)
    ]


def test_calibrate_measures_the_spread_between_suite_runs():
    per_run = [[r for r in aa_records() if r["run_id"] == rid] for rid in AA_SPEEDS]
    cal = noise.calibrate(per_run, ["tokens_per_s", "peak_memory_bytes"], Thresholds())
    assert cal.run_ids == ["aa1", "aa2", "aa3"]
    tokens = next(f for f in cal.floors if f.metric == "tokens_per_s")
    assert tokens.repeats == [5, 5, 5] and len(tokens.estimates) == 3
    assert tokens.largest_change == pytest.approx(10_300 / 9_900 - 1, abs=0.005)
    assert tokens.noise_floor >= tokens.largest_change and tokens.spread > 0.01
    # Without a floor, compare cannot call every pair of identical runs unchanged.
    assert sum(tokens.aa_verdicts.values()) == 3 and tokens.aa_verdicts.get(UNCHANGED, 0) < 3
    memory = next(f for f in cal.floors if f.metric == "peak_memory_bytes")
    assert (
        memory.noise_floor == 0.0
        and cal.floor(tokens.cell_hash, "tokens_per_s") == tokens.noise_floor
    )
    with pytest.raises(UsageError, match="at least two runs"):
        noise.calibrate(per_run[:1], ["tokens_per_s"], Thresholds())


def test_resolvable_change_is_the_smallest_slowdown_compare_catches():
    quiet = [lognormal(8, 10_000.0 * (1 + 0.004 * k), 0.01, seed=k) for k in range(4)]
    t = Thresholds()
    floor = 0.02
    smallest = noise.resolvable_change(quiet, True, t, floor)
    assert smallest is not None and t.threshold < smallest < 0.15
    # Just above it, a candidate run set is regressed; below the threshold nothing can be.
    slowed = [v / (1 + smallest + 0.01) for v in quiet[1]]
    assert compare_samples(quiet[0], slowed, True, t, noise_floor=floor).verdict == REGRESSED
    # Noisier runs need a larger change; runs too few for a test at alpha 0.01 resolve nothing.
    noisy = [lognormal(8, 10_000.0, 0.08, seed=k) for k in range(4)]
    assert (noise.resolvable_change(noisy, True, t, floor) or 1.0) > smallest
    assert noise.resolvable_change([q[:3] for q in quiet], True, t, floor) is None


def test_calibrate_cli_over_one_file_and_over_a_directory(tmp_path, capsys):
    one = write(tmp_path / "aa.jsonl", aa_records())
    code, out, _ = cli(capsys, "compare", "--calibrate", str(one))
    assert code == EXIT_OK and "3 A/A runs (aa1, aa2, aa3)" in out, out
    assert "gpt-small/torch/fp32/ga1/none" in out and "noise floor" in out and "spread" in out
    folder = tmp_path / "aa"
    folder.mkdir()
    for rid in AA_SPEEDS:
        write(folder / f"{rid}.jsonl", [r for r in aa_records() if r["run_id"] == rid])
    code, out_dir, _ = cli(capsys, "compare", "--calibrate", str(folder))
    assert code == EXIT_OK and out_dir == out
    # One run is not a calibration.
    write(tmp_path / "single.jsonl", runs(5, 10_000.0, 0.002, seed=1, run_id="aa1"))
    code, _, err = cli(capsys, "compare", "--calibrate", str(tmp_path / "single.jsonl"))
    assert code == 2 and "at least two runs" in err


def test_calibration_stored_with_a_baseline_and_applied(tmp_path, capsys):
    floors = tmp_path / "noise.json"
    aa = write(tmp_path / "aa.jsonl", aa_records())
    assert cli(capsys, "compare", "--calibrate", str(aa), "-o", str(floors))[0] == EXIT_OK
    assert json.loads(floors.read_text())["schema"] == noise.SCHEMA
    base = write(tmp_path / "base.jsonl", runs(8, 10_000.0, 0.002, seed=7, run_id="b"))
    d = str(tmp_path / "baselines")
    code, out, _ = cli(
        capsys, "baseline", "save", str(base), "--dir", d, "--name", "n", "--noise", str(floors)
    )
    assert code == 0 and "noise floors from 3 A/A run(s)" in out
    stored = tmp_path / "baselines" / "n"
    assert noise.load(stored / noise.FILE_NAME).run_ids == ["aa1", "aa2", "aa3"]
    floor = noise.load(floors).floors[0].noise_floor
    code, out, _ = cli(capsys, "baseline", "show", "n", "--dir", d)
    assert code == 0 and f"±{floor:.1%}" in out, out
    # A 4% drop is plain against the baseline's own runs, but within this runner's A/A noise.
    cand = write(tmp_path / "cand.jsonl", runs(8, 9_600.0, 0.002, seed=8, run_id="c"))
    report = json.loads(
        cli(capsys, "compare", str(stored), str(cand), "--format", "json", "--threshold", "2%")[1]
    )
    (result,) = report["results"]
    assert report["noise"] and "3 A/A runs" in report["noise"]
    assert result["noise_floor"] == pytest.approx(floor) and result["verdict"] == INCONCLUSIVE
    code, out, _ = cli(
        capsys, "compare", str(base), str(cand), "--format", "json", "--threshold", "2%"
    )
    assert code == EXIT_REGRESSED and json.loads(out)["noise"] is None
    # --noise applies a file to any baseline.
    code, out, _ = cli(
        capsys,
        "compare",
        str(base),
        str(cand),
        "--noise",
        str(floors),
        "--format",
        "json",
        "--threshold",
        "2%",
    )
    assert json.loads(out)["results"][0]["noise_floor"] == pytest.approx(floor)


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "not a readable noise file"),
        ('{"schema": "other"}', "not an hlbench noise file"),
        ('{"schema": "hlbench-noise/1", "floors": [{"cell_hash": 1}]}', "damaged noise file"),
    ],
)
def test_a_damaged_noise_file_is_exit_2_in_one_line(tmp_path, capsys, text, message):
    bad = tmp_path / "bad.json"
    bad.write_text(text)
    base = write(tmp_path / "base.jsonl", runs(5, 10_000.0, 0.002, seed=1))
    code, out, err = cli(capsys, "compare", str(base), str(base), "--noise", str(bad))
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    code, _, err = cli(
        capsys, "baseline", "save", str(base), "--dir", str(tmp_path / "b"), "--noise", str(bad)
    )
    assert code == 2 and message in err and not (tmp_path / "b").exists()


# ------------------------------------------------------------------------------------------------
# Which runs an input holds, and which are compared


def two_runs_file(path: Path) -> Path:
    """A records file holding run `slow` (20% slower), then run `same`, of the same cell."""
    return write(
        path,
        [
            *runs(8, 8_000.0, 0.002, seed=2, run_id="slow"),
            *runs(8, 10_000.0, 0.002, seed=3, run_id="same"),
        ],
    )


def test_several_runs_in_one_file_use_the_latest_and_say_so(tmp_path, capsys):
    base = write(tmp_path / "base.jsonl", runs(8, 10_000.0, 0.002, seed=1, run_id="b"))
    cand = two_runs_file(tmp_path / "cand.jsonl")
    code, out, err = cli(capsys, "compare", str(base), str(cand), "--format", "json")
    assert code == EXIT_OK and "holds 2 runs (slow, same); using the latest, same" in err, err
    report = json.loads(out)
    assert report["candidate_run_ids"] == ["same"] and len(report["notes"]) == 1
    assert report["results"][0]["n_candidate"] == 8


def test_run_id_picks_pools_or_refuses(tmp_path, capsys):
    cand = two_runs_file(tmp_path / "cand.jsonl")
    base = write(tmp_path / "base.jsonl", runs(8, 10_000.0, 0.002, seed=1, run_id="b"))
    code, out, err = cli(
        capsys, "compare", str(base), str(cand), "--run-id", "slow", "--format", "json"
    )
    assert code == EXIT_REGRESSED and err == "" and json.loads(out)["candidate_run_ids"] == ["slow"]
    code, out, _ = cli(
        capsys, "compare", str(base), str(cand), "--run-id", "all", "--format", "json"
    )
    report = json.loads(out)
    assert (
        report["candidate_run_ids"] == ["slow", "same"]
        and report["results"][0]["n_candidate"] == 16
    )
    assert load_run(cand, ["all"]).records == load_run(cand, ["slow", "same"]).records
    code, _, err = cli(capsys, "compare", str(base), str(cand), "--run-id", "nosuch")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "holds no run nosuch; its runs are slow, same" in err


def test_a_directory_of_records_files_is_one_input(tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()
    write(folder / "1.jsonl", runs(5, 10_000.0, 0.002, seed=1, run_id="first"))
    write(folder / "2.jsonl", runs(5, 10_000.0, 0.002, seed=2, run_id="second"))
    run = load_run(folder)
    assert (
        run.run_ids == ["second"]
        and len(run.records) == 5
        and "using the latest, second" in run.note
    )
    pooled = load_run(folder, ["all"])
    assert pooled.run_ids == ["first", "second"] and pooled.note == ""
    assert [len(r) for r in split_runs(pooled)] == [5, 5]


def test_tokens_per_s_is_the_records_own_figure_or_the_same_definition():
    from hlbench.comparison.metrics import METRICS
    from tests.helpers import record

    estimate = METRICS["tokens_per_s"].estimate
    rec = record([1000.0] * 9 + [500.0])  # one slow step: 1/10 of the steps take twice as long
    recorded = rec["metrics"]["tokens_per_s"]
    assert estimate(rec) == recorded == pytest.approx(1000.0 * 10 / 11)  # not a per-step median
    rec["metrics"]["tokens_per_s"] = 1234.0
    assert estimate(rec) == 1234.0  # the record's own number, as run/report/table show it
    del rec["metrics"]["tokens_per_s"]
    assert estimate(rec) == pytest.approx(recorded)  # derived the same way where absent


def test_the_floor_counts_only_the_drift_the_repeats_do_not_explain():
    t = Thresholds()
    # Four suite runs of one process-noisy cell, no drift between them: each run's median differs
    # from the others only as much as 8 scattered repeats predict, so the floor stays small.
    steady = [lognormal(8, 10_000.0, 0.08, seed=k) for k in range(4)]
    still = noise._floor("h", "c", "tokens_per_s", steady, t, resolvable=False)
    # The same scatter, the runs shifted by -10%, 0, +10%, +20%: drift the repeats cannot explain.
    shifted = [[v * f for v in run] for run, f in zip(steady, (0.9, 1.0, 1.1, 1.2))]
    moved = noise._floor("h", "c", "tokens_per_s", shifted, t, resolvable=False)
    assert still.drift < 0.5 * still.spread and moved.drift > 0.08
    assert moved.noise_floor > 0.25 > still.noise_floor
    # One repeat per run: nothing to tell scatter from drift, so all the spread is drift.
    single = noise._floor("h", "c", "tokens_per_s", [r[:1] for r in shifted], t, resolvable=False)
    assert single.drift == pytest.approx(single.spread)
