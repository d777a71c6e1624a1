"""`hlbench baseline save|show|list|name`: named baselines per suite and machine type."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from hlbench.cli import main
from hlbench.comparison import baseline
from hlbench.comparison.comparability import load_run, records_file
from tests.helpers import A100, H200, STEADY, lognormal, record, runs, write


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_default_name_encodes_suite_and_machine_type(tmp_path):
    gpu = write(tmp_path / "gpu.jsonl", [record(STEADY, gpus=[H200])])
    two = write(tmp_path / "two.jsonl", [record(STEADY, gpus=[A100, A100])])
    cpu = write(
        tmp_path / "cpu.jsonl", [record(STEADY, gpus=[], cpu_model="AMD EPYC 9654 96-Core")]
    )
    assert baseline.default_name(load_run(gpu)) == "ci-gpu--nvidia-h200"
    assert baseline.default_name(load_run(two)) == "ci-gpu--2x-nvidia-a100-sxm4-80gb"
    assert baseline.default_name(load_run(cpu)) == "ci-gpu--cpu-amd-epyc-9654-96-core"


def test_save_show_list_and_compare_against_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HLBENCH_BASELINES_DIR", str(tmp_path / "baselines"))
    accepted = runs(8, 10_000.0, 0.005, seed=1)
    run = write(tmp_path / "run.jsonl", [*accepted, {"kind": "parity", "cell_hash": "x"}])
    code, out, _ = cli(capsys, "baseline", "save", str(run), "--note", "accepted after review")
    assert code == 0 and "baseline 'ci-gpu--nvidia-h200'" in out
    stored = tmp_path / "baselines" / "ci-gpu--nvidia-h200"
    meta = json.loads((stored / "baseline.json").read_text())
    assert (
        meta["note"] == "accepted after review"
        and meta["cells_ok"] == 1
        and meta["machine_type"] == "nvidia-h200"
        and meta["noise_runs"] is None
    )
    assert meta["environment"]["gpu_models"] == [H200] and meta["environment"]["driver_major"] == [
        "550"
    ]
    # the parity record is not a cell
    assert len((stored / "records.jsonl").read_text().splitlines()) == 8
    assert not (stored / "noise.json").exists()

    median = statistics.median(r["metrics"]["tokens_per_s"] for r in accepted)
    code, out, _ = cli(capsys, "baseline", "show", "ci-gpu--nvidia-h200")
    assert code == 0 and "accepted after review" in out and "env.gpu_models: NVIDIA H200" in out
    assert "gpt-small/torch/fp32/ga1/none" in out and f"{median:,.0f}" in out
    assert "— (not calibrated)" in out
    code, out, _ = cli(capsys, "baseline", "show", "ci-gpu--nvidia-h200", "--format", "json")
    (cell,) = json.loads(out)["cells"]
    assert cell["repeats_ok"] == 8 and cell["tokens_per_s_median"] == pytest.approx(median)
    assert cell["tokens_per_s_noise_floor"] is None
    assert cli(capsys, "baseline", "list")[1] == "ci-gpu--nvidia-h200\n"

    slow = write(tmp_path / "slow.jsonl", runs(8, 8_000.0, 0.005, seed=3))
    code, out, _ = cli(capsys, "baseline", "name", str(slow), "--path")
    assert Path(out.strip()) == stored
    assert cli(capsys, "compare", out.strip(), str(slow))[0] == 1


def test_save_takes_the_latest_run_of_several_or_the_one_asked(tmp_path, capsys):
    both = write(
        tmp_path / "both.jsonl",
        [*runs(5, 10_000.0, 0.005, seed=1, run_id="r1"), *runs(5, 9_000.0, 0.005, 2, run_id="r2")],
    )
    d = str(tmp_path / "b")
    code, _, err = cli(capsys, "baseline", "save", str(both), "--dir", d, "--name", "x")
    assert code == 0 and "using the latest, r2" in err
    assert {r["run_id"] for r in load_run(tmp_path / "b" / "x").records} == {"r2"}
    code, _, err = cli(
        capsys, "baseline", "save", str(both), "--dir", d, "--name", "x", "--run-id", "r1"
    )
    assert code == 0 and err == ""
    assert {r["run_id"] for r in load_run(tmp_path / "b" / "x").records} == {"r1"}


def test_save_refuses_noise_floors_of_other_cells(tmp_path, capsys):
    aa = [
        r
        for i in (1, 2)
        for r in runs(5, 10_000.0, 0.005, seed=i, run_id=f"aa{i}", cell_hash="c" * 16)
    ]
    floors = tmp_path / "noise.json"
    assert (
        cli(
            capsys,
            "compare",
            "--calibrate",
            str(write(tmp_path / "aa.jsonl", aa)),
            "-o",
            str(floors),
        )[0]
        == 0
    )
    run = write(tmp_path / "run.jsonl", runs(5, 10_000.0, 0.005, seed=3))
    code, _, err = cli(
        capsys, "baseline", "save", str(run), "--dir", str(tmp_path / "b"), "--noise", str(floors)
    )
    assert code == 2 and "noise floors are of other cells" in err and not (tmp_path / "b").exists()


def test_promoting_again_keeps_the_previous_version(tmp_path, capsys):
    first = write(tmp_path / "first.jsonl", [record(STEADY)])
    second = write(tmp_path / "second.jsonl", [record(lognormal(60, 9_000.0, 0.02, seed=4))])
    d = tmp_path / "b"
    assert cli(capsys, "baseline", "save", str(first), "--dir", str(d), "--name", "nightly")[0] == 0
    first_meta = json.loads((d / "nightly" / "baseline.json").read_text())
    assert (
        cli(capsys, "baseline", "save", str(second), "--dir", str(d), "--name", "nightly")[0] == 0
    )
    assert json.loads((d / "nightly" / "baseline.json").read_text())["source"] == str(second)
    (old,) = (d / "nightly" / "history").iterdir()
    assert json.loads((old / "baseline.json").read_text())["saved_at"] == first_meta["saved_at"]

    def parsed(path: Path) -> list[dict]:
        return [json.loads(line) for line in path.read_text().splitlines()]

    assert parsed(old / "records.jsonl") == parsed(first)
    assert parsed(d / "nightly" / "records.jsonl") == parsed(second)
    # The baseline directory still holds exactly one records file at its top: compare reads it.
    assert baseline.find("nightly", d) == d / "nightly"
    assert records_file(d / "nightly") == d / "nightly" / "records.jsonl"
    assert load_run(d / "nightly").records == parsed(second)


@pytest.mark.parametrize(
    "records, args, message",
    [
        ([record(None, status="oom")], [], "no cell ran ok"),
        ([record(STEADY)], ["--name", "../escape"], "baseline name '../escape'"),
    ],
)
def test_save_refuses(tmp_path, capsys, records, args, message):
    run = write(tmp_path / "run.jsonl", records)
    code, _, err = cli(capsys, "baseline", "save", str(run), "--dir", str(tmp_path / "b"), *args)
    assert code == 2 and message in err and not (tmp_path / "b" / "escape").exists()


def test_show_unknown_baseline_names_the_known_ones(tmp_path, capsys):
    run = write(tmp_path / "run.jsonl", [record(STEADY)])
    cli(capsys, "baseline", "save", str(run), "--dir", str(tmp_path), "--name", "known")
    code, _, err = cli(capsys, "baseline", "show", "other", "--dir", str(tmp_path))
    assert code == 2 and "no such baseline" in err and "known" in err
