"""`hlbench baseline save|show|list|name`: named baselines per suite and machine type."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hlbench.cli import main
from hlbench.compare import baseline
from hlbench.compare.comparability import load_run
from tests.helpers import A100, H200, STEADY, lognormal, record, write


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
    run = write(tmp_path / "run.jsonl", [record(STEADY), {"kind": "parity", "cell_hash": "x"}])
    code, out, _ = cli(capsys, "baseline", "save", str(run), "--note", "accepted after #12")
    assert code == 0 and "baseline 'ci-gpu--nvidia-h200'" in out
    stored = tmp_path / "baselines" / "ci-gpu--nvidia-h200"
    meta = json.loads((stored / "baseline.json").read_text())
    assert (
        meta["note"] == "accepted after #12"
        and meta["cells_ok"] == 1
        and meta["machine_type"] == "nvidia-h200"
    )
    assert meta["environment"]["gpu_models"] == [H200] and meta["environment"]["driver_major"] == [
        "550"
    ]
    # the parity record is not a cell
    assert len((stored / "records.jsonl").read_text().splitlines()) == 1

    code, out, _ = cli(capsys, "baseline", "show", "ci-gpu--nvidia-h200")
    assert code == 0 and "accepted after #12" in out and "env.gpu_models: NVIDIA H200" in out
    assert "gpt-small/torch/fp32/ga1/none" in out and "9,998" in out  # median tokens/s of STEADY
    code, out, _ = cli(capsys, "baseline", "show", "ci-gpu--nvidia-h200", "--format", "json")
    assert json.loads(out)["cells"][0]["steps"] == 60
    assert cli(capsys, "baseline", "list")[1] == "ci-gpu--nvidia-h200\n"

    slow = write(tmp_path / "slow.jsonl", [record(lognormal(60, 8_000.0, 0.02, seed=3))])
    code, out, _ = cli(capsys, "baseline", "name", str(slow), "--path")
    assert Path(out.strip()) == stored
    assert cli(capsys, "compare", out.strip(), str(slow))[0] == 1


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
    assert load_run(d / "nightly").path == d / "nightly" / "records.jsonl"


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
