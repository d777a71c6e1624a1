"""Regenerate the committed fixture records by running hlbench itself (15-30 min on 2 CPU cores).

From the repository root (both parts by default), then the golden reports:

    PYTHONPATH=$PWD python tests/data/make_fixtures.py [clean] [troubled]
    HLBENCH_UPDATE_GOLDEN=1 PYTHONPATH=$PWD python -m pytest tests/test_report.py

Every record is written by the real writers: `hlbench run` (runner, worker, telemetry) and
`hlbench parity`, on tiny CPU cells, one thread per worker (OMP_NUM_THREADS=1). Failures come from
the documented test-only hooks, one `hlbench run --resume --only CELL` per failure, all into one
records file:

- records.jsonl: a matrix where every cell runs ok, gpt-tiny on torch and tf and lstm-tiny on torch
  × fp32/bf16/fp16 × accumulation 1/4, magnitude and 2:4 pruning (gpt-tiny, torch, fp32), two
  repeats, no telemetry (on a loaded machine its windows disagree, and the report says so);
- parity.jsonl: `hlbench parity` of gpt-tiny fp32, torch against tf (passes);
- troubled.jsonl (gpt-tiny, torch): an ok cell with telemetry; gradual pruning whose events fall in
  the first measured window (window CV far above 10%); a step delay past `budget_s` (budget hit, too
  few steps); tf32 on the CPU (skipped); a MemoryError (oom); a delay past `timeout_s` (timeout); a
  SIGKILL (crashed); a precision mismatch (error) and then the resumed `ok` record replacing it; and
  a parity record failed by a perturbed weight.

The one thing no CPU can record is a GPU's telemetry: the ok cell's `telemetry` section is rebuilt
by the real writer (Collector.finish, see telemetry_replay.py) from the run's own host samples with
synthetic NVML fields added (device memory, power, an energy counter, power-cap throttling on a
quarter of the samples). Its measured windows are far shorter than an energy counter resolves, so
its energy is null with the writer's reason, as a real GPU run of such a cell would record.

The numbers are whatever the machine measured; rerun only when the writers change, then regenerate
the goldens and check that their diff is what the new records explain.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))  # the repository, for hlbench and tests.data

from hlbench.records import read_records  # noqa: E402
from tests.data.telemetry_replay import telemetry_section, with_gpu  # noqa: E402

TINY = """\
seed: 0
device: cpu
workloads:
  - {model: gpt, size: tiny, seq_len: 32, batch_size: 8}
"""
CLEAN = f"""\
name: fixture
backends: [torch, tf]
{TINY}  - {{model: lstm, size: tiny, seq_len: 32, batch_size: 8}}
axes:
  precision: [fp32, bf16, fp16]
  accumulation: [1, 4]
  pruning: [none, magnitude, "2:4"]
exclude:
  - {{workload: lstm-tiny, backend: tf}}
  - {{pruning: [magnitude, "2:4"], precision: [bf16, fp16]}}
  - {{pruning: [magnitude, "2:4"], accumulation: 4}}
  - {{pruning: [magnitude, "2:4"], backend: tf}}
  - {{pruning: [magnitude, "2:4"], workload: lstm-tiny}}
measurement: {{warmup_steps: 2, steps: 10, windows: 3, repeats: 2, budget_s: 20, timeout_s: 120, \
eval_batches: 2}}
optimizer: {{lr: 1e-3}}
telemetry: {{enabled: false}}
"""
PARITY = f"""\
name: fixture
backends: [torch, tf]
{TINY}axes: {{precision: [fp32], accumulation: [1]}}
optimizer: {{lr: 1e-3}}
"""
TROUBLED = f"""\
name: troubled
backends: [torch]
{TINY}axes:
  precision: [fp32, fp16, tf32]
  accumulation: [1, 4]
  pruning: [none, gradual, magnitude, structured, "2:4"]
pruning:
  gradual: {{method: magnitude, schedule: gradual, start_step: 2, end_step: 11, every_steps: 1}}
measurement: {{warmup_steps: 2, steps: 10, windows: 3, repeats: 1, budget_s: 3, timeout_s: 120, \
eval_batches: 2}}
optimizer: {{lr: 1e-3}}
telemetry: {{interval_s: 0.02}}
"""
TELEMETRY_CELL = "gpt-tiny/torch/fp32/ga1/none"
# (cells, test hooks, telemetry) of each `hlbench run` into the troubled records file, in order
TROUBLED_STEPS: list[tuple[list[str], dict[str, str], bool]] = [
    ([TELEMETRY_CELL], {}, True),
    (["gpt-tiny/torch/fp32/ga1/gradual"], {}, False),
    (
        ["gpt-tiny/torch/fp32/ga4/none"],
        {"HLBENCH_TEST_STEP_DELAY_S": "0.8"},
        False,
    ),  # 4 steps > budget_s
    (["gpt-tiny/torch/tf32/ga1/none"], {}, False),  # tf32 needs an NVIDIA GPU: skipped
    (["gpt-tiny/torch/fp16/ga1/none"], {"HLBENCH_TEST_KILL_RANK": "0:3:oom"}, False),
    (
        ["gpt-tiny/torch/fp32/ga1/magnitude"],
        {"HLBENCH_TEST_STEP_DELAY_S": "70"},
        False,
    ),  # warmup > timeout_s
    (["gpt-tiny/torch/fp32/ga1/structured"], {"HLBENCH_TEST_KILL_RANK": "0:3"}, False),
    (["gpt-tiny/torch/fp32/ga1/2:4"], {"HLBENCH_TEST_PRECISION_MISMATCH": "1"}, False),
    (["gpt-tiny/torch/fp32/ga1/2:4"], {}, False),  # the resumed run: ok replaces the error
]


def hlbench(args: list[str], cwd: Path, hooks: dict[str, str] | None = None) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(hooks or {})}
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(HERE.parent.parent), env.get("PYTHONPATH")])
    )
    proc = subprocess.run(
        [sys.executable, "-m", "hlbench", *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    if proc.returncode not in (0, 1):  # 1: a cell failed, which the troubled steps intend
        raise SystemExit(
            f"hlbench {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}"
        )


def only_file(directory: Path, pattern: str) -> Path:
    (path,) = directory.glob(pattern)
    return path


def clean(work: Path) -> None:
    (work / "clean.yaml").write_text(CLEAN)
    hlbench(["run", "clean.yaml", "--quiet", "--results-dir", "out"], work)
    shutil.copy(only_file(work / "out" / "fixture", "*.jsonl"), HERE / "records.jsonl")
    (work / "parity.yaml").write_text(PARITY)
    hlbench(["parity", "parity.yaml", "--results-dir", "parity"], work)
    shutil.copy(only_file(work / "parity" / "fixture", "parity-*.jsonl"), HERE / "parity.jsonl")


def troubled(work: Path) -> None:
    (work / "troubled.yaml").write_text(TROUBLED)
    records: Path | None = None
    for cells, hooks, telemetry in TROUBLED_STEPS:
        where = ["--resume", str(records)] if records else ["--results-dir", "out"]
        only = [arg for cell in cells for arg in ("--only", cell)]
        hlbench(
            [
                "run",
                "troubled.yaml",
                "--quiet",
                *where,
                *only,
                *([] if telemetry else ["--no-telemetry"]),
            ],
            work,
            hooks,
        )
        records = records or only_file(work / "out" / "troubled", "*.jsonl")
    (work / "parity-troubled.yaml").write_text(PARITY.replace("name: fixture", "name: troubled"))
    hlbench(
        ["parity", "parity-troubled.yaml", "--results-dir", "parity"],
        work,
        {"HLBENCH_TEST_PARITY_PERTURB": "tf:wte"},
    )
    assert records is not None
    out = [with_replayed_gpu(r, records.parent) for r in read_records(records)]
    out += read_records(only_file(work / "parity" / "troubled", "parity-*.jsonl"))
    write(HERE / "troubled.jsonl", out)


def with_replayed_gpu(record: dict[str, Any], records_dir: Path) -> dict[str, Any]:
    """The telemetry cell's record, its section rebuilt from its host samples plus NVML fields."""
    if record["cell_id"] != TELEMETRY_CELL or not record.get("telemetry"):
        return record
    section = record["telemetry"]
    with open(records_dir / section["samples_path"], newline="") as f:
        host = [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]
    status = {k: v for k, v in section["telemetry_status"].items() if k != "nvml"}
    target = HERE / "troubled.telemetry" / f"{record['cell_hash']}-r{record['repeat']}.csv"
    shutil.rmtree(target.parent, ignore_errors=True)
    rows = with_gpu(host, throttled_every=4)
    return {
        **record,
        "telemetry": telemetry_section(rows, record, target, section["interval_s"], status),
    }


def write(path: Path, records: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records))


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="hlbench-fixtures-") as tmp:
        which = sys.argv[1:] or ["clean", "troubled"]
        if "clean" in which:
            clean(Path(tmp))
        if "troubled" in which:
            troubled(Path(tmp))
