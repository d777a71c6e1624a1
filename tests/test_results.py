"""hlbench.results: records -> tidy DataFrame. No framework is imported; fixtures are in
tests/data/."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hlbench.errors import UsageError
from hlbench.results import BASE_COLUMNS, load, load_all, load_parity

DATA = Path(__file__).resolve().parent / "data"
TELEMETRY_CELL = "gpt-tiny/torch/fp32/ga1/none"  # the troubled cell with (replayed GPU) telemetry
REPO = DATA.parent.parent


def _records(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / name).read_text().splitlines()]


def _write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_one_row_per_cell_and_repeat_with_unit_columns() -> None:
    df = load([DATA / "records.jsonl"])
    assert len(df) == 40
    assert not df.duplicated(["cell_hash", "repeat"]).any()
    assert list(df.columns) == BASE_COLUMNS  # no extra axes in these records
    for column in (
        "tokens_per_s",
        "step_time_median_s",
        "peak_mem_bytes",
        "excess_eval_loss_nats",
        "energy_per_token_j",
        "host_peak_rss_bytes",
        "entropy_floor_nats",
    ):
        assert column in df
    assert df["ok"].all() and not df["failed"].any()
    # the raw samples are parsed once into arrays: 3 windows of 10 steps
    assert all(isinstance(a, np.ndarray) and len(a) == 30 for a in df["step_times_s"])
    assert df["energy_per_token_j"].isna().all()  # no NVML on a CPU: null, not zero


def test_peak_memory_prefers_the_framework_allocator_and_names_its_source(tmp_path: Path) -> None:
    records = _records("records.jsonl")
    tf = next(r for r in records if r["cell"]["backend"] == "tf")
    # what the TF backend writes on a GPU: its allocator's peak, below the worker's RSS
    tf["memory"]["tf_gpu_peak_bytes"] = tf["memory"]["host_peak_rss_bytes"] // 4
    torch = next(r for r in records if r["cell"]["backend"] == "torch")
    rows = load([_write(tmp_path / "r.jsonl", [tf, torch])]).set_index("backend")
    assert rows.loc["tf", "peak_mem_source"] == "tf_gpu_peak_bytes"
    assert rows.loc["tf", "peak_mem_bytes"] < rows.loc["tf", "host_peak_rss_bytes"]
    # CPU torch has no allocator statistics: host RSS, and the record says why
    assert rows.loc["torch", "peak_mem_source"] == "host_peak_rss_bytes"
    assert rows.loc["torch", "framework_memory_reason"].startswith(
        "PyTorch keeps no allocator statistics"
    )
    # NVML's device-wide peak (telemetry.derived) ranks above host RSS
    nvml = load([DATA / "troubled.jsonl"]).set_index("cell_id").loc[TELEMETRY_CELL]
    assert nvml["peak_mem_source"] == "nvml_device_peak_used_bytes"


def test_failed_and_skipped_rows_are_kept_and_marked() -> None:
    df = load([DATA / "troubled.jsonl"]).set_index("cell_id")
    assert df.loc["gpt-tiny/torch/fp16/ga1/none", "status"] == "oom"
    assert (
        bool(df.loc["gpt-tiny/torch/fp16/ga1/none", "failed"])
        and not df.loc["gpt-tiny/torch/fp16/ga1/none", "ok"]
    )
    skipped = df.loc["gpt-tiny/torch/tf32/ga1/none"]
    assert skipped["status"] == "skipped" and not skipped["failed"] and not skipped["ok"]
    assert "tf32 needs an NVIDIA" in skipped["reason"]
    assert np.isnan(skipped["tokens_per_s"])


def test_resumed_cell_keeps_the_last_record() -> None:
    df = load([DATA / "troubled.jsonl"])
    resumed = df[df["cell_id"] == "gpt-tiny/torch/fp32/ga1/2:4"]
    assert (
        len(resumed) == 1 and resumed.iloc[0]["status"] == "ok"
    )  # the error before it was replaced


def test_parity_records_are_separate() -> None:
    results = load_all([DATA / "records.jsonl", DATA / "parity.jsonl"])
    assert len(results.cells) == 40  # parity lines never become cell rows
    parity = load_parity([DATA / "parity.jsonl"])
    (record,) = _records("parity.jsonl")
    assert list(parity["check"]) == [c["name"] for c in record["checks"]]  # one row per check
    assert "initial_loss" in list(parity["check"])
    assert parity["passed"].all() and parity["backends"].iloc[0] == "torch/tf"


def test_telemetry_samples_and_throttling_are_read() -> None:
    row = load([DATA / "troubled.jsonl"]).set_index("cell_id").loc[TELEMETRY_CELL]
    section = next(r for r in _records("troubled.jsonl") if r.get("cell_id") == TELEMETRY_CELL)
    n_samples = section["telemetry"]["n_samples"]
    # every sample of the CSV, and the replayed GPU memory ramps up to 320 MB (make_fixtures.py)
    assert len(row["telemetry_mem_t_s"]) == n_samples and row["telemetry_mem_bytes"].max() == 320e6
    assert row["throttled"] is True


def test_absent_sections_and_fields_are_null_not_errors(tmp_path: Path) -> None:
    record = _records("records.jsonl")[0]
    for key in ("memory", "telemetry", "backend_info", "timing", "loss", "metrics"):
        del record[key]
    del record["env"]["framework"]
    df = load([_write(tmp_path / "r.jsonl", [record])])
    row = df.iloc[0]
    assert row["status"] == "ok"
    assert (
        pd.isna(row["tokens_per_s"])
        and row["peak_mem_source"] is None
        and len(row["step_times_s"]) == 0
    )


def test_extra_axes_become_columns(tmp_path: Path) -> None:
    record = _records("records.jsonl")[0]
    record["cell"]["axes"]["compile"] = True
    record["cell"]["axes"]["rope"] = "yes"
    row = load([_write(tmp_path / "r.jsonl", [record])]).iloc[0]
    assert row["compile"] == True and row["rope"] == "yes"  # noqa: E712


@pytest.mark.parametrize("version, words", [(0, "re-run the suite"), (2, "upgrade hlbench")])
def test_other_schema_versions_give_a_clear_message(
    tmp_path: Path, version: int, words: str
) -> None:
    records = _records("records.jsonl")[:2]
    records[1]["schema_version"] = version
    path = _write(tmp_path / "old.jsonl", records)
    with pytest.raises(UsageError) as exc:
        load([path])
    message = str(exc.value)
    assert str(path) in message and "line 2" in message
    assert (
        f"version {version}" in message and "reads only version 1" in message and words in message
    )


def test_not_a_records_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no schema_version"):
        load([_write(tmp_path / "x.jsonl", [{"hello": 1}])])
    with pytest.raises(UsageError, match="no such records file"):
        load([tmp_path / "missing.jsonl"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no \\*.jsonl"):
        load([tmp_path / "empty"])


def test_directory_expands_to_its_records_files() -> None:
    results = load_all([DATA])
    assert [p.name for p in results.files] == ["parity.jsonl", "records.jsonl", "troubled.jsonl"]


def test_loading_and_reporting_import_no_framework() -> None:
    code = (
        "import sys; from pathlib import Path; import tempfile\nfrom hlbench.reporting import "
        "write_report\nfrom hlbench.cli import "
        f"build_parser\nwrite_report([Path({str(DATA / 'troubled.jsonl')!r})], "
        "Path(tempfile.mkdtemp()) / 'r.md')\nbad = [m for m in ('torch', 'tensorflow', 'jax') if "
        "m in sys.modules]\nassert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=120)
