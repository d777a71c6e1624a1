"""`hlbench compare`: verdicts on synthetic samples, environment refusal, exit codes, formats.

Records here are synthetic (the fields compare reads, shaped like a real CPU record); no framework
is imported. The end-to-end test at the bottom trains a tiny torch cell twice, the second time with
the documented test-only delay, and expects `compare` to call it a regression.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hlbench.cli import main
from hlbench.compare.comparability import environment, environment_differences
from hlbench.compare.runs import compare_runs
from hlbench.compare.verdicts import (
    EXIT_INCOMPARABLE,
    EXIT_INCONCLUSIVE,
    EXIT_OK,
    EXIT_REGRESSED,
    FAILED,
    IMPROVED,
    INCONCLUSIVE,
    METRICS,
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
    suite_yaml,
    write,
)

# ------------------------------------------------------------------------------------------------
# The verdict rule on samples


def test_identical_distributions_are_unchanged():
    base = lognormal(60, 1000.0, 0.02, seed=1)
    cand = lognormal(60, 1000.0, 0.02, seed=2)
    c = compare_samples(base, cand, higher_is_better=True)
    assert c.verdict == UNCHANGED
    assert abs(c.change) < 0.01 and c.p_value > 0.05, c


def test_twenty_percent_slowdown_with_low_noise_regresses():
    base = lognormal(60, 1000.0, 0.02, seed=1)
    cand = lognormal(60, 800.0, 0.02, seed=2)  # tokens/s down 20%
    c = compare_samples(base, cand, higher_is_better=True)
    assert c.verdict == REGRESSED
    assert c.change == pytest.approx(-0.20, abs=0.01) and c.p_value < 1e-15, c


def test_twenty_percent_speedup_improves():
    base = lognormal(60, 1000.0, 0.02, seed=1)
    cand = lognormal(60, 1200.0, 0.02, seed=2)
    c = compare_samples(base, cand, higher_is_better=True)
    assert (
        c.verdict == IMPROVED and c.change == pytest.approx(0.20, abs=0.01) and c.p_value < 1e-15
    ), c


def test_high_noise_is_inconclusive():
    base = lognormal_quantiles(12, 1000.0, 0.6)
    cand = [0.8 * x for x in base]  # exactly 20% slower, but the spread swamps it
    c = compare_samples(base, cand, higher_is_better=True)
    assert c.verdict == INCONCLUSIVE and "spread too wide" in c.note
    assert c.change == pytest.approx(-0.20) and c.p_value > 0.3, c


def test_direction_follows_the_metric():
    fast, slow = lognormal(40, 0.010, 0.02, seed=1), lognormal(40, 0.012, 0.02, seed=2)
    # step time up 20%
    assert compare_samples(fast, slow, higher_is_better=False).verdict == REGRESSED
    assert compare_samples(slow, fast, higher_is_better=False).verdict == IMPROVED


def test_significant_but_small_change_is_unchanged():
    base = lognormal(200, 1000.0, 0.002, seed=1)
    cand = lognormal(200, 980.0, 0.002, seed=2)  # -2%: provable, but under the 5% threshold
    c = compare_samples(base, cand, higher_is_better=True)
    assert c.verdict == UNCHANGED and c.p_value < 1e-10 and "within 5%" in c.note


def test_too_few_samples_is_inconclusive():
    c = compare_samples([1000.0] * 5, [500.0] * 5, higher_is_better=True)
    assert c.verdict == INCONCLUSIVE and "too few samples" in c.note and c.p_value is None
    # The minimum is a setting.
    c = compare_samples(
        lognormal(5, 1000, 0.01, 1), lognormal(5, 500, 0.01, 2), True, Thresholds(min_samples=5)
    )
    assert c.verdict == REGRESSED and c.p_value < Thresholds().alpha


def test_per_run_metrics_use_the_threshold_alone_below_min_samples():
    # Peak memory, one value per repeat: +10% with one repeat each is a regression on the threshold
    # alone.
    c = compare_samples([1000.0], [1100.0], higher_is_better=False, per_step=False)
    assert c.verdict == REGRESSED and c.p_value is None and "threshold only" in c.note
    assert compare_samples([1000.0], [1030.0], False, per_step=False).verdict == UNCHANGED
    # Repeats that already disagree by more than the threshold: no verdict.
    c = compare_samples([1000.0, 1200.0], [1300.0, 1310.0], False, per_step=False)
    assert c.verdict == INCONCLUSIVE and "spread" in c.note


def test_not_available_and_non_positive_reference():
    assert compare_samples(None, [1.0], True).verdict == NOT_AVAILABLE
    assert compare_samples([], [], True).note == "not recorded on either side"
    c = compare_samples([-0.01], [0.02], False, per_step=False)  # an excess loss below the floor
    assert c.verdict == INCONCLUSIVE and c.change is None


def test_all_tied_samples_are_unchanged_not_nan():
    c = compare_samples([5.0] * 20, [5.0] * 20, True)
    assert c.verdict == UNCHANGED and c.p_value == 1.0


def test_exit_code_precedence():
    assert exit_code([UNCHANGED, IMPROVED, NOT_AVAILABLE]) == EXIT_OK
    assert exit_code([UNCHANGED, INCONCLUSIVE]) == EXIT_INCONCLUSIVE
    assert exit_code([INCONCLUSIVE, REGRESSED, IMPROVED]) == EXIT_REGRESSED
    assert exit_code([INCONCLUSIVE, FAILED]) == EXIT_REGRESSED


# ------------------------------------------------------------------------------------------------
# Synthetic records


def compare_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["compare", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_regression_exit_1_and_speedup_exit_0(tmp_path, capsys):
    base = write(tmp_path / "base.jsonl", [record(STEADY)])
    slow = write(tmp_path / "slow.jsonl", [record(lognormal(60, 8_000.0, 0.02, seed=12))])
    fast = write(tmp_path / "fast.jsonl", [record(lognormal(60, 12_000.0, 0.02, seed=13))])
    code, out, _ = compare_cli(capsys, str(base), str(slow))
    assert (
        code == EXIT_REGRESSED
        and re.search(r"regressed .*p < 0.01", out)
        and re.search(r" -(19|20|21)\.\d%", out)
    ), out
    code, out, _ = compare_cli(capsys, str(base), str(fast))
    assert code == EXIT_OK and "improved" in out


def test_cli_identical_distributions_exit_0(tmp_path, capsys):
    base = write(tmp_path / "base.jsonl", [record(STEADY)])
    same = write(tmp_path / "same.jsonl", [record(lognormal(60, 10_000.0, 0.02, seed=12))])
    code, out, _ = compare_cli(capsys, str(base), str(same))
    assert code == EXIT_OK and "1 unchanged" in out


def test_cli_high_noise_exit_3(tmp_path, capsys):
    noisy = lognormal_quantiles(12, 10_000.0, 0.6)
    base = write(tmp_path / "base.jsonl", [record(noisy)])
    cand = write(tmp_path / "cand.jsonl", [record([0.8 * x for x in noisy])])
    code, out, _ = compare_cli(capsys, str(base), str(cand))
    assert code == EXIT_INCONCLUSIVE and "inconclusive" in out


def test_cli_different_gpu_model_exit_2_naming_the_field(tmp_path, capsys):
    base = write(tmp_path / "base.jsonl", [record(STEADY, gpus=[A100])])
    cand = write(tmp_path / "cand.jsonl", [record(STEADY, gpus=[H200])])
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
    base = write(
        tmp_path / "base.jsonl", [record(STEADY, driver="550.54.15", cpu_model="AMD EPYC 9654")]
    )
    cand = write(
        tmp_path / "cand.jsonl", [record(STEADY, driver="550.90.07", cpu_model="Intel Xeon 8480")]
    )
    code, out, _ = compare_cli(capsys, str(base), str(cand))
    assert code == EXIT_OK and "not comparable" not in out
    unknown = write(tmp_path / "unknown.jsonl", [record(STEADY, driver=None)])
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
        tmp_path / "base.jsonl", [record(STEADY, cell_id=i, cell_hash=h) for i, h in (a, b)]
    )
    cand = write(
        tmp_path / "cand.jsonl", [record(STEADY, cell_id=i, cell_hash=h) for i, h in (a, c)]
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
    base = write(tmp_path / "base.jsonl", [record(STEADY)])
    cand = write(tmp_path / "cand.jsonl", [record(None, status="oom")])
    code, out, _ = compare_cli(capsys, str(base), str(cand))
    assert code == EXIT_REGRESSED and "failed" in out and "candidate oom: oom in test" in out


def test_last_record_per_repeat_wins_and_parity_records_are_ignored(tmp_path, capsys):
    base = write(tmp_path / "base.jsonl", [record(STEADY)])
    # A crash, then the resumed ok record for the same repeat; a parity record in between.
    cand = write(
        tmp_path / "cand.jsonl",
        [
            record(None, status="crashed"),
            {"kind": "parity", "cell_hash": "a" * 16},
            record(lognormal(60, 8_000.0, 0.02, seed=5)),
        ],
    )
    code, out, _ = compare_cli(capsys, str(base), str(cand), "--format", "json")
    (result,) = json.loads(out)["results"]
    assert code == EXIT_REGRESSED and result["verdict"] == REGRESSED and result["n_candidate"] == 60
    assert len(current_records(json.loads(line) for line in cand.read_text().splitlines())) == 1


def test_repeats_are_pooled():
    base = [record(STEADY[:30], repeat=0), record(STEADY[30:], repeat=1)]
    cand = [record(lognormal(30, 8_000.0, 0.02, seed=r), repeat=r) for r in (0, 1)]
    (result,) = compare_runs(base, cand).results
    assert (result.comparison.n_baseline, result.comparison.n_candidate) == (60, 60)
    assert result.comparison.verdict == REGRESSED


def test_metric_not_available_is_not_a_crash(tmp_path, capsys):
    base = write(tmp_path / "base.jsonl", [record(STEADY)])
    cand = write(tmp_path / "cand.jsonl", [record(STEADY)])
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


def test_energy_from_the_telemetry_writer_is_compared(tmp_path, capsys):
    # 4 s of measured windows at 320 W → 1280 J; at 268.8 W → 1075.2 J (0.07 J per token of 60 ×
    # 256)
    base = with_gpu_telemetry(record(STEADY), 320.0, tmp_path / "base.csv")
    cand = with_gpu_telemetry(record(STEADY), 268.8, tmp_path / "cand.csv")
    # where the writer puts it
    assert base["telemetry"]["derived"]["gpu_energy_j"] == pytest.approx(1280.0)
    write(tmp_path / "base.jsonl", [base])
    write(tmp_path / "cand.jsonl", [cand])
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
    assert energy["verdict"] == IMPROVED and (energy["n_baseline"], energy["n_candidate"]) == (1, 1)
    assert energy["median_baseline"] == pytest.approx(1280.0 / (60 * TOKENS_PER_STEP))
    assert energy["median_candidate"] == pytest.approx(0.07) and code == EXIT_OK


def test_energy_and_memory_metrics_when_recorded(tmp_path, capsys):
    base = write(
        tmp_path / "base.jsonl",
        [with_gpu_telemetry(record(STEADY, peak_bytes=2**30), 320.0, tmp_path / "base.csv")],
    )
    cand = write(
        tmp_path / "cand.jsonl",
        [
            with_gpu_telemetry(
                record(STEADY, peak_bytes=int(1.2 * 2**30)), 268.8, tmp_path / "cand.csv"
            )
        ],
    )
    code, out, _ = compare_cli(capsys, str(base), str(cand), "--metric", "all", "--format", "json")
    by_metric = {r["metric"]: r for r in json.loads(out)["results"]}
    assert set(by_metric) == set(METRICS)
    assert by_metric["peak_memory_bytes"]["verdict"] == REGRESSED  # +20%, threshold only
    energy = by_metric["energy_j_per_token"]
    assert (
        energy["median_baseline"] == pytest.approx(1280.0 / (60 * TOKENS_PER_STEP))
        and energy["verdict"] == IMPROVED
    )
    assert code == EXIT_REGRESSED


def test_markdown_for_a_pull_request(tmp_path, capsys):
    base = write(tmp_path / "base.jsonl", [record(STEADY)])
    cand = write(tmp_path / "cand.jsonl", [record(lognormal(60, 8_000.0, 0.02, seed=12))])
    out_md = tmp_path / "out" / "compare.md"
    code, printed, _ = compare_cli(
        capsys, str(base), str(cand), "--format", "md", "-o", str(out_md)
    )
    md = out_md.read_text()
    assert code == EXIT_REGRESSED and printed == ""
    assert md.startswith("<!-- hlbench-compare -->\n### hlbench compare: **regressed** (exit 1)")
    assert "| cell | metric | baseline | candidate | change | p | n | verdict | note |" in md
    assert (
        "| gpt-small/torch/fp32/ga1/none | tokens/s | 9,998 | 8,007 | -19.9% | 3.6e-21 | 60/60 | "
        "regressed |" in md
    )


GOLDEN = REPO / "tests" / "data" / "compare"


@pytest.mark.parametrize("fmt", ["md", "text"])
def test_golden_output(tmp_path, capsys, monkeypatch, fmt):
    """The whole report for a mixed case, byte for byte (HLBENCH_UPDATE_GOLDEN=1 rewrites it)."""
    monkeypatch.chdir(tmp_path)
    cells = [
        ("gpt-small/torch/fp32/ga1/none", "a" * 16),
        ("gpt-small/torch/bf16/ga1/none", "b" * 16),
        ("gpt-small/torch/fp32/ga4/none", "c" * 16),
        ("gpt-small/torch/bf16/ga4/none", "d" * 16),
    ]
    noisy = lognormal_quantiles(12, 9_000.0, 0.6)
    write(
        Path("base.jsonl"),
        [
            record(STEADY, cell_id=cells[0][0], cell_hash=cells[0][1]),
            record(STEADY, cell_id=cells[1][0], cell_hash=cells[1][1]),
            record(noisy, cell_id=cells[2][0], cell_hash=cells[2][1]),
            record(STEADY, cell_id=cells[3][0], cell_hash=cells[3][1]),
        ],
    )
    write(
        Path("cand.jsonl"),
        [
            record(
                lognormal(60, 8_000.0, 0.02, seed=12),
                cell_id=cells[0][0],
                cell_hash=cells[0][1],
                driver=None,
            ),
            record(
                lognormal(60, 12_000.0, 0.02, seed=13),
                cell_id=cells[1][0],
                cell_hash=cells[1][1],
                driver=None,
            ),
            record(
                [0.8 * x for x in noisy], cell_id=cells[2][0], cell_hash=cells[2][1], driver=None
            ),
            record(
                STEADY, cell_id="gpt-small/torch/fp16/ga1/none", cell_hash="e" * 16, driver=None
            ),
        ],
    )
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


@pytest.mark.parametrize(
    "args, message",
    [
        (["--threshold", "5"], "expected a fraction"),
        (["--metric", "speed"], "--metric speed: unknown"),
        (["--alpha", "2"], "--alpha 2.0"),
    ],
)
def test_usage_errors_exit_2(tmp_path, capsys, args, message):
    base = write(tmp_path / "base.jsonl", [record(STEADY)])
    try:
        code = main(["compare", str(base), str(base), *args])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    assert code == 2 and message in capsys.readouterr().err


def test_threshold_accepts_percent(tmp_path, capsys):
    base = write(tmp_path / "base.jsonl", [record(STEADY)])
    cand = write(tmp_path / "cand.jsonl", [record(lognormal(60, 9_000.0, 0.02, seed=12))])  # -10%
    assert compare_cli(capsys, str(base), str(cand), "--threshold", "15%")[0] == EXIT_OK
    assert compare_cli(capsys, str(base), str(cand), "--threshold", "0.05")[0] == EXIT_REGRESSED


def test_run_directory_and_missing_paths(tmp_path, capsys):
    run_dir = tmp_path / "run"
    (run_dir / "x.logs").mkdir(parents=True)
    write(run_dir / "r1.jsonl", [record(STEADY)])
    write(run_dir / "x.logs" / "ignored.jsonl", [record(STEADY)])
    assert compare_cli(capsys, str(run_dir), str(run_dir))[0] == EXIT_OK
    write(run_dir / "r2.jsonl", [record(STEADY)])
    code, _, err = compare_cli(capsys, str(run_dir), str(run_dir))
    assert code == 2 and "2 records files" in err
    code, _, err = compare_cli(capsys, str(tmp_path / "nope.jsonl"), str(run_dir))
    assert code == 2 and "no such records file or run directory" in err


def test_environment_summary_ignores_records_without_a_worker():
    skipped = record(None, status="skipped")
    skipped["env"]["framework"] = None
    env = environment([record(STEADY), skipped])
    assert env["gpu_models"] == [H200] and env["torch_version"] == ["2.5.1+cu124"]
    assert not environment_differences(env, env).fatal


def test_compare_imports_no_framework(tmp_path):
    path = write(tmp_path / "r.jsonl", [record(STEADY)])
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
    assert proc.returncode == 0, proc.stderr


# ------------------------------------------------------------------------------------------------
# End to end on the CPU: a real slowdown through the documented test-only hook

TINY_SUITE = suite_yaml(
    name="e2e",
    device="cpu",
    backends=["torch"],
    workloads=[{"model": "gpt", "size": "tiny", "seq_len": 16, "batch_size": 4}],
    axes={"precision": ["fp32"], "accumulation": [1]},
    measurement={
        "warmup_steps": 2,
        "steps": 10,
        "windows": 2,
        "budget_s": 30,
        "timeout_s": 120,
        "eval_batches": 1,
    },
)
DELAY_S = 0.05  # several times a tiny step on these CPUs: far above noise, so the test cannot flake


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
    runs = {}
    for name, delay in (("base", None), ("slow", DELAY_S)):
        run_env = {**env, "HLBENCH_TEST_STEP_DELAY_S": str(delay)} if delay else env
        proc = run_cli(
            "run",
            str(suite),
            "--quiet",
            "--results-dir",
            name,
            cwd=tmp_path,
            env=run_env,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        (runs[name],) = (tmp_path / name / "e2e").glob("*.jsonl")

    # Promote the first run, then compare the slowed one against the stored baseline.
    proc = run_cli(
        "baseline", "save", str(runs["base"]), "--dir", "baselines", cwd=tmp_path, env=env
    )
    assert proc.returncode == 0, proc.stderr
    proc = run_cli(
        "baseline", "name", str(runs["slow"]), "--dir", "baselines", "--path", cwd=tmp_path, env=env
    )
    baseline_dir = tmp_path / proc.stdout.strip()
    assert baseline_dir.is_dir(), proc.stdout + proc.stderr

    proc = run_cli(
        "compare", str(baseline_dir), str(runs["slow"]), "--format", "json", cwd=tmp_path, env=env
    )
    assert proc.returncode == EXIT_REGRESSED, proc.stdout + proc.stderr
    (result,) = json.loads(proc.stdout)["results"]
    assert result["verdict"] == REGRESSED and result["n_baseline"] == result["n_candidate"] == 20
    # Each step got DELAY_S longer: the median step time rose by at least that much, less noise.
    base_step_s = TOKENS_PER_STEP_E2E / result["median_baseline"]
    slow_step_s = TOKENS_PER_STEP_E2E / result["median_candidate"]
    assert slow_step_s - base_step_s > 0.8 * DELAY_S, (base_step_s, slow_step_s)
    assert result["change"] < -0.3 and result["p_value"] < 1e-4
    print(
        f"e2e: step {base_step_s * 1e3:.1f} ms → {slow_step_s * 1e3:.1f} ms, tokens/s change "
        f"{result['change']:+.1%}, p = {result['p_value']:.2g}"
    )
    assert math.isfinite(result["p_value"])


TOKENS_PER_STEP_E2E = 4 * 16  # batch_size × seq_len of TINY_SUITE
