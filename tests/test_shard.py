"""Sharded runs: the split of a suite's cells (hlbench.sweep.shard), shards run as separate
processes and read back as one run (report, table, compare), what is said when a shard is missing
or two ran the same cell, --shard auto from a scheduler's variables, resume per shard, the cluster
recipes under examples/cluster/ and the submitit launcher."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from hlbench.errors import UsageError
from hlbench.sweep import shard as sharding
from hlbench.sweep.shard import Shard
from tests.helpers import REPO, run_cli, suite_yaml

EXAMPLES = REPO / "examples" / "cluster"

# Twelve cells (2 precisions × 3 accumulations × 2 prunings), three repeats; never run.
MATRIX = suite_yaml(
    axes={
        "precision": ["fp32", "bf16"],
        "accumulation": [1, 2, 4],
        "pruning": ["none", "magnitude"],
    },
    measurement={"warmup_steps": 1, "steps": 2, "windows": 1, "repeats": 3},
)
# The same cells, listed in another order.
MATRIX_REORDERED = suite_yaml(
    axes={
        "pruning": ["magnitude", "none"],
        "accumulation": [4, 1, 2],
        "precision": ["bf16", "fp32"],
    },
    measurement={"warmup_steps": 1, "steps": 2, "windows": 1, "repeats": 3},
)
# Run for real with the test-only `fault` backend (a NumPy "trainer"): 5 cells × 2 repeats.
FAULT_SUITE = """\
name: sharded
backends: [fault]
workloads:
  - {model: gpt, size: tiny, seq_len: 8, batch_size: 4}
  - {model: gpt, size: tiny, seq_len: 4, batch_size: 4, name: gpt-short}
axes: {accumulation: [1, 2, 4]}
exclude: [{workload: gpt-short, accumulation: 4}]
measurement: {warmup_steps: 1, steps: 2, windows: 1, eval_batches: 0, repeats: 2}
"""
SHARDS = 3


def _load(write_suite: Any, text: str, name: str = "suite.yaml") -> Any:
    from hlbench.suite import load_suite

    return load_suite(write_suite(text, name))


# --- the split -----------------------------------------------------------------------------------


def test_shards_cover_every_cell_once_evenly_whatever_the_suite_order(write_suite):
    cells = _load(write_suite, MATRIX).cells
    reordered = _load(write_suite, MATRIX_REORDERED, "reordered.yaml").cells
    assert [c.id for c in cells] != [c.id for c in reordered]
    for count in (1, 2, 5, 12):
        parts = [sharding.partition(cells, Shard(i, count)) for i in range(count)]
        hashes = [cell.hash for part in parts for cell in part]
        assert sorted(hashes) == sorted(cell.hash for cell in cells)  # each cell exactly once
        sizes = [len(part) for part in parts]
        assert max(sizes) - min(sizes) <= 1, sizes
        for i, part in enumerate(parts):  # the split depends on the cells, not on their order
            assert {c.hash for c in sharding.partition(reordered, Shard(i, count))} == {
                c.hash for c in part
            }
            shuffled = random.Random(i).sample(cells, len(cells))
            assert {c.hash for c in sharding.partition(shuffled, Shard(i, count))} == {
                c.hash for c in part
            }
        # a shard keeps the suite's order among its cells
        assert all([c for c in cells if c in part] == part for part in parts)


def test_a_cell_s_repeats_stay_in_its_shard(write_suite):
    from hlbench.sweep.plan import plan

    suite = _load(write_suite, MATRIX)
    everything = {(t.cell.hash, t.repeat) for t in plan(suite, set())}
    seen: set[tuple[str, int]] = set()
    for i in range(4):
        suite.cells = sharding.partition(_load(write_suite, MATRIX).cells, Shard(i, 4))
        tasks = {(t.cell.hash, t.repeat) for t in plan(suite, set())}
        assert tasks == {(c.hash, r) for c in suite.cells for r in range(3)}
        assert not tasks & seen
        seen |= tasks
    assert seen == everything


def test_more_shards_than_cells_is_refused(write_suite):
    cells = _load(write_suite, MATRIX).cells
    with pytest.raises(UsageError, match="at most 12 shard"):
        sharding.partition(cells, Shard(0, 13))


@pytest.mark.parametrize(
    "text, match",
    [
        ("3/3", "numbered from 0 to 2"),
        ("0/0", "count must be"),
        ("1", "expected I/N"),
        ("-1/3", "expected I/N"),
        ("a/b", "expected I/N"),
        ("auto/x", "count must be"),
    ],
)
def test_bad_shard_specs_are_one_line_errors(text: str, match: str):
    with pytest.raises(UsageError, match=match) as info:
        sharding.parse_shard(text, {})
    assert "\n" not in str(info.value)


def test_shard_auto_reads_the_scheduler_s_variables():
    slurm = {"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "3"}
    assert sharding.parse_shard("auto", slurm) == Shard(2, 4, "SLURM_ARRAY_TASK_ID")
    assert sharding.parse_shard("auto/4", slurm).index == 2  # a count given must agree
    stepped = {**slurm, "SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_STEP": "2"}  # 3-9:2
    assert sharding.parse_shard("auto", stepped).index == 2
    k8s = {"JOB_COMPLETION_INDEX": "3"}
    assert sharding.parse_shard("auto/4", k8s) == Shard(3, 4, "JOB_COMPLETION_INDEX")
    for spec, env, match in [
        ("auto/5", slurm, "has 4 task"),
        ("auto", {**slurm, "SLURM_ARRAY_TASK_ID": "8"}, "not in an evenly spaced array"),
        ("auto", {**stepped, "SLURM_ARRAY_TASK_ID": "6"}, "not in an evenly spaced array"),
        ("auto", {**slurm, "SLURM_ARRAY_TASK_COUNT": "many"}, "not an integer"),
        ("auto", k8s, "auto/N"),
        ("auto/3", k8s, "out of range"),
        ("auto", {}, "no scheduler variables"),
    ]:
        with pytest.raises(UsageError, match=match):
            sharding.parse_shard(spec, env)


def test_run_ids_of_shards():
    sha = "ab" * 32
    assert sharding.shard_run_id(None, sha, {"SLURM_ARRAY_JOB_ID": "77"}) == f"slurm77-{sha[:12]}"
    launch = {"HLBENCH_LAUNCH_ID": "uid-1", "SLURM_ARRAY_JOB_ID": "77"}
    assert sharding.shard_run_id(None, sha, launch) == f"uid-1-{sha[:12]}"
    assert sharding.shard_run_id("nightly-3", sha, launch) == "nightly-3"
    with pytest.raises(UsageError, match="share its run id"):
        sharding.shard_run_id(None, sha, {})
    for bad in ("../up", "a/b", ".hidden", "x" * 101, ""):
        with pytest.raises(UsageError, match="a run id is"):
            sharding.check_run_id(bad)


def _record(run: str, index: int, count: int, cell: str, repeat: int = 0) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "run_id": run,
        "cell_id": f"id-{cell}",
        "cell_hash": cell,
        "repeat": repeat,
        "status": "ok",
        "cell": {"measurement": {"repeats": 1}},
        "shard": {"index": index, "count": count, "cells": 1},
    }


def test_what_is_said_of_a_run_s_shards():
    from hlbench.records.shards import shard_notes

    whole = [_record("R", 0, 2, "a"), _record("R", 1, 2, "b")]
    assert shard_notes(whole) == []
    assert shard_notes([{**r, "shard": None} for r in whole[:1]]) == []  # not a sharded run
    assert shard_notes(whole[:1]) == ["shard 1/2 of run R not found"]
    doubled = shard_notes([*whole, _record("R", 1, 2, "a")])
    assert doubled[-1].startswith("cell id-a of run R was run by shard 0/2 and shard 1/2")
    assert "cut 2 and 3 ways" in shard_notes([*whole, _record("R", 0, 3, "c")])[0]
    assert shard_notes([_record("S", 0, 2, "a"), *whole]) == ["shard 1/2 of run S not found"]
    huge = shard_notes([_record("R", 0, 10**9, "a")])  # a hostile count stays a few lines
    assert len(huge) == 6 and huge[-1] == "... and 999999994 more shards of run R not found"


# --- shards as separate processes, read back as one run ------------------------------------------


SCHEDULER_VARIABLES = ("SLURM_", "JOB_COMPLETION_INDEX", sharding.LAUNCH_ID_ENV)


def _env(tmp: Path) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(SCHEDULER_VARIABLES)},
        "HLBENCH_BACKENDS": "fault=tests.fault_backend:SPEC",
        "PYTHONPATH": path,
        "HLBENCH_TEST_PIDFILE": str(tmp / "pids"),
    }


def _hlbench(*args: str) -> list[str]:
    return [sys.executable, "-m", "hlbench", *args]


def _records(path: Path) -> list[dict[str, Any]]:
    files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    return [json.loads(line) for f in files for line in f.read_text().splitlines() if line]


@pytest.fixture(scope="module")
def sharded_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The fault suite run twice: as 3 shards at once (3 processes) and in one piece."""
    tmp = tmp_path_factory.mktemp("shards")
    suite = tmp / "suite.yaml"
    suite.write_text(FAULT_SUITE)
    env = _env(tmp)
    common = ["--quiet", "--no-telemetry", "--run-id", "R1"]
    procs = [
        subprocess.Popen(
            _hlbench("run", str(suite), "--shard", f"{i}/{SHARDS}", *common),
            cwd=tmp,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(SHARDS)
    ]
    single = run_cli(
        "run", str(suite), "--quiet", "--no-telemetry", "--run-id", "one", cwd=tmp, env=env
    )
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    assert single.returncode == 0, single.stdout + single.stderr
    dry = run_cli("run", str(suite), "--dry-run", cwd=tmp, env=env)
    return {
        "tmp": tmp,
        "suite": suite,
        "env": env,
        "run_dir": tmp / "results" / "sharded" / "R1",
        "single": tmp / "results" / "sharded" / "one.jsonl",
        "outputs": outputs,
        "dry_run": dry.stdout,
    }


def _copy_run(sharded_run: dict[str, Any], tmp_path: Path) -> Path:
    run_dir = tmp_path / "R1"
    shutil.copytree(sharded_run["run_dir"], run_dir)
    return run_dir


@pytest.fixture
def hlbench(sharded_run, monkeypatch, capsys):
    """`hlbench ARGS` in this process (the CLI's parser and commands; workers are still processes
    of their own), with the fault backend registered and `env` set for the call: (exit status,
    stdout, stderr)."""
    from hlbench.cli import main

    for name in list(os.environ):
        if name.startswith(SCHEDULER_VARIABLES):
            monkeypatch.delenv(name)
    for name in ("HLBENCH_BACKENDS", "PYTHONPATH", "HLBENCH_TEST_PIDFILE"):
        monkeypatch.setenv(name, sharded_run["env"][name])
    monkeypatch.chdir(sharded_run["tmp"])

    def call(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
        capsys.readouterr()
        with monkeypatch.context() as scoped:
            for name, value in (env or {}).items():
                scoped.setenv(name, value)
            code = main(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return call


def test_shards_run_as_processes_cover_every_cell_exactly_once(sharded_run):
    run_dir = sharded_run["run_dir"]
    files = sorted(p.name for p in run_dir.glob("*.jsonl"))
    assert files == [f"shard-{i}-of-{SHARDS}.jsonl" for i in range(SHARDS)]
    records = _records(run_dir)
    tasks = [(r["cell_hash"], r["repeat"]) for r in records]
    assert len(tasks) == len(set(tasks)) == 10  # 5 cells × 2 repeats, none twice
    single = {(r["cell_hash"], r["repeat"]) for r in _records(sharded_run["single"])}
    assert set(tasks) == single
    suite_hashes = {line.split()[1] for line in sharded_run["dry_run"].splitlines()[2:-1]}
    assert {h for h, _ in tasks} == suite_hashes
    for i in range(SHARDS):  # every record says its shard; a cell's repeats are in one file
        shard_records = _records(run_dir / f"shard-{i}-of-{SHARDS}.jsonl")
        assert {r["run_id"] for r in shard_records} == {"R1"}
        assert {json.dumps(r["shard"], sort_keys=True) for r in shard_records} == {
            json.dumps(
                {"cells": len(shard_records) // 2, "count": SHARDS, "index": i}, sort_keys=True
            )
        }
    assert "hlbench report results/sharded/R1/ -o reports/sharded.md" in sharded_run["outputs"][0]


def test_the_run_directory_reads_as_one_run_equal_to_a_single_run(sharded_run, hlbench, tmp_path):
    code, union, err = hlbench("table", str(sharded_run["run_dir"]), "--format", "json")
    assert code == 0 and "warning" not in err, err
    code, single, err = hlbench("table", str(sharded_run["single"]), "--format", "json")
    assert code == 0, err
    rows = {(r["cell_id"], r["repeat"]) for r in json.loads(union)}
    assert rows == {(r["cell_id"], r["repeat"]) for r in json.loads(single)}
    assert {r["run_id"] for r in json.loads(union)} == {"R1"}
    out = tmp_path / "report.md"
    code, _, err = hlbench("report", str(sharded_run["run_dir"]), "-o", str(out))
    assert code == 0, err
    text = out.read_text()
    assert "- **Runs:** R1\n" in text and "10 cell record(s) (5 cells" in text
    assert "**Warning:**" not in text


def test_a_missing_shard_is_said_by_table_report_and_compare(sharded_run, hlbench, tmp_path):
    from hlbench.reporting import render

    run_dir = _copy_run(sharded_run, tmp_path)
    (run_dir / f"shard-2-of-{SHARDS}.jsonl").unlink()
    expected = f"shard 2/{SHARDS} of run R1 not found"
    code, _, err = hlbench("table", str(run_dir))
    assert code == 0 and f"hlbench: warning: {expected}" in err, err
    text = render([run_dir], tmp_path / "r.md", draw_plots=False)
    assert f"- **Warning:** {expected}" in text
    _, out, err = hlbench("compare", str(sharded_run["single"]), str(run_dir))
    assert f"hlbench: warning: {expected}" in err, err
    assert expected in out  # and in compare's report


def test_a_cell_two_shards_ran_is_said_and_counted_once(sharded_run, hlbench, tmp_path):
    from hlbench.comparison.inputs import load_run

    run_dir = _copy_run(sharded_run, tmp_path)
    first = _records(run_dir / f"shard-0-of-{SHARDS}.jsonl")[0]
    doubled = {**first, "shard": {**first["shard"], "index": 1}}
    with open(run_dir / f"shard-1-of-{SHARDS}.jsonl", "a") as f:
        f.write(json.dumps(doubled) + "\n")
    code, out, err = hlbench("table", str(run_dir), "--format", "json")
    assert code == 0, err
    assert f"cell {first['cell_id']} of run R1 was run by shard 0/3 and shard 1/3" in err
    assert len(json.loads(out)) == 10
    run = load_run(run_dir)
    assert len(run.records) == 10 and any("was run by" in w for w in run.warnings)


def test_an_unfinished_shard_resumes_alone(sharded_run, hlbench, tmp_path):
    run_dir = _copy_run(sharded_run, tmp_path)
    shard_file = run_dir / f"shard-1-of-{SHARDS}.jsonl"
    lines = shard_file.read_text().splitlines(keepends=True)
    shard_file.write_text("".join(lines[:-1]))  # as if stopped before its last task
    suite = str(sharded_run["suite"])
    _, _, err = hlbench("table", str(run_dir))
    assert f"shard 1/{SHARDS} of run R1 has records of 3 of its 4 cell runs" in err
    code, _, err = hlbench("run", suite, "--resume", str(shard_file), "--quiet", "--no-telemetry")
    assert code == 0, err
    assert f"1 cell run(s) of suite 'sharded', shard 1/{SHARDS} of run R1" in err
    after = _records(shard_file)
    assert len(after) == len(lines) and after[-1]["shard"]["index"] == 1
    assert after[-1]["run_id"] == "R1"
    # the same shard's command again (a requeued task) continues its file: nothing left to run
    shutil.copytree(run_dir, tmp_path / "elsewhere" / "sharded" / "R1")
    code, out, err = hlbench(
        "run", suite, "--shard", f"1/{SHARDS}", "--run-id", "R1", "--results-dir",
        str(tmp_path / "elsewhere"), "--quiet",
    )  # fmt: skip
    assert code == 0 and "continuing it" in err, err
    assert "nothing to run" in out


def test_shard_flags_are_checked_with_one_line_errors(sharded_run, hlbench):
    suite, single = str(sharded_run["suite"]), str(sharded_run["single"])
    for args, match in [
        (["--shard", "3/3", "--run-id", "x"], "numbered from 0 to 2"),
        (["--shard", "0/6", "--run-id", "x"], "at most 5 shard"),
        (["--shard", "0/2"], "share its run id"),
        (["--shard", "0/2", "--run-id", "a/b"], "a run id is"),
        (["--shard", "0/2", "--run-id", "x", "--report"], "--report with --shard"),
        (["--shard", "0/2", "--resume", single], "not a shard's records file"),
        (["--shard", "auto"], "no scheduler variables"),
        (["--slurm", "6"], "at most 5 shard"),
        (["--slurm", "2", "--report"], "needs --slurm-wait"),
        (["--slurm", "2", "--slurm-option", "account"], "expected KEY=VALUE"),
    ]:
        code, _, err = hlbench("run", suite, *args)
        assert code == 2, (args, err)
        assert match in err and len(err.strip().splitlines()) == 1, err


def test_dry_run_lists_the_shard_the_scheduler_gives(sharded_run, hlbench):
    suite = str(sharded_run["suite"])
    slurm = {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_JOB_ID": "77"}
    code, out, err = hlbench("run", suite, "--shard", "auto", "--dry-run", env=slurm)
    assert code == 0, err
    listed = {line.split()[0] for line in out.splitlines()[2:-2]}
    shard_file = sharded_run["run_dir"] / "shard-1-of-3.jsonl"
    assert listed == {r["cell_id"] for r in _records(shard_file)}
    assert "shard 1/3 of run slurm77-" in out and "(from SLURM_ARRAY_TASK_ID)" in out
    k8s = {"JOB_COMPLETION_INDEX": "1", "HLBENCH_LAUNCH_ID": "job-uid"}
    code, out, err = hlbench("run", suite, "--shard", "auto/3", "--dry-run", env=k8s)
    assert code == 0 and "shard 1/3 of run job-uid-" in out, err
    assert {line.split()[0] for line in out.splitlines()[2:-2]} == listed
    code, out, err = hlbench("run", suite, "--slurm", "3", "--dry-run", "--run-id", "x")
    assert code == 0 and "shard 1/3 of run x: 2 of 5 cell(s)" in out, err


# --- the recipes ---------------------------------------------------------------------------------


def test_the_slurm_array_script_is_valid_bash_and_runs_a_shard(sharded_run, tmp_path):
    script = EXAMPLES / "slurm-array.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    text = script.read_text()
    assert "#SBATCH --array=" in text and "--shard auto" in text and "#SBATCH --gpus" in text
    shim = tmp_path / "bin" / "hlbench"  # `hlbench` as the installed entry point would run it
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m hlbench "$@"\n')
    shim.chmod(0o755)
    env = {
        **sharded_run["env"],
        "PATH": f"{shim.parent}{os.pathsep}{os.environ['PATH']}",
        "SLURM_ARRAY_TASK_ID": "2",
        "SLURM_ARRAY_TASK_COUNT": "3",
        "SLURM_ARRAY_TASK_MIN": "0",
        "SLURM_ARRAY_JOB_ID": "501",
        "SLURM_SUBMIT_DIR": str(tmp_path),
    }
    proc = subprocess.run(
        ["bash", str(script), str(sharded_run["suite"]), "--dry-run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "shard 2/3 of run slurm501-" in proc.stdout


def test_the_kubernetes_manifest_is_an_indexed_job_that_runs_its_shard():
    job = yaml.safe_load((EXAMPLES / "k8s-indexed-job.yaml").read_text())
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    completions, parallelism = spec["completions"], spec["parallelism"]
    assert isinstance(completions, int) and 1 <= parallelism <= completions
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    command = container["command"]
    assert command[:2] == ["hlbench", "run"] and (REPO / command[2]).is_file()
    shard_spec = command[command.index("--shard") + 1]
    # what a pod of each index runs: its own shard of `completions`
    for index in range(completions):
        shard = sharding.parse_shard(shard_spec, {"JOB_COMPLETION_INDEX": str(index)})
        assert (shard.index, shard.count) == (index, completions)
    assert container["resources"]["limits"]["nvidia.com/gpu"] >= 1
    results = command[command.index("--results-dir") + 1]
    assert any(m["mountPath"] == results for m in container["volumeMounts"])
    env = {e["name"]: e for e in container["env"]}
    assert "fieldRef" in env["HLBENCH_LAUNCH_ID"]["valueFrom"]
    names = {rule["onExitCodes"]["containerName"] for rule in spec["podFailurePolicy"]["rules"]
             if "onExitCodes" in rule}  # fmt: skip
    assert names == {container["name"]}


# --- submitit ------------------------------------------------------------------------------------


def test_slurm_launcher_submits_every_shard_through_submitit(sharded_run, tmp_path):
    pytest.importorskip("submitit")
    env, suite = sharded_run["env"], str(sharded_run["suite"])
    proc = run_cli(
        "run", suite, "--slurm", "2", "--slurm-cluster", "local", "--slurm-wait",
        "--only", "gpt-short/*", "--no-telemetry", "--run-id", "sub", cwd=tmp_path, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "shard 1/2 (job" in proc.stdout and "exit status 0" in proc.stdout
    records = _records(tmp_path / "results" / "sharded" / "sub")
    tasks = [(r["cell_hash"], r["repeat"]) for r in records]
    assert len(tasks) == len(set(tasks)) == 4  # gpt-short's 2 cells × 2 repeats, once each
    assert {r["shard"]["index"] for r in records} == {0, 1}
    assert {r["cell"]["workload"]["name"] for r in records} == {"gpt-short"}  # --only passed on


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("sbatch") is None or not os.environ.get("HLBENCH_TEST_SLURM"),
    reason="needs a Slurm cluster (sbatch) and HLBENCH_TEST_SLURM=1: "
    "examples/cluster/slurm-localhost.sh makes one on this machine",
)
def test_a_real_slurm_array_runs_the_suite(sharded_run, tmp_path):
    shim = tmp_path / "bin" / "hlbench"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m hlbench "$@"\n')
    shim.chmod(0o755)
    env = {
        **sharded_run["env"],
        "PATH": f"{shim.parent}{os.pathsep}{os.environ['PATH']}",
        "HLBENCH_RESULTS": str(tmp_path / "results"),
    }
    script = EXAMPLES / "slurm-array.sh"
    submit = subprocess.run(
        # a one-node cluster without GPUs (examples/cluster/slurm-localhost.sh): no GPU, 1 CPU
        ["sbatch", "--parsable", "--wait", "--array=0-2", "--gpus-per-task=0",
         "--cpus-per-task=1", "--time=10", f"--output={tmp_path}/slurm-%A_%a.out", str(script),
         str(sharded_run["suite"]), "--no-telemetry"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert submit.returncode == 0, submit.stdout + submit.stderr
    job = submit.stdout.strip().split(";")[0]
    (run_dir,) = (tmp_path / "results" / "sharded").glob(f"slurm{job}-*")
    tasks = [(r["cell_hash"], r["repeat"]) for r in _records(run_dir)]
    assert len(tasks) == len(set(tasks)) == 10
    # and the same through submitit's Slurm executor
    proc = run_cli(
        "run", str(sharded_run["suite"]), "--slurm", "2", "--slurm-gpus", "0", "--slurm-cpus",
        "1", "--slurm-time-min", "10", "--slurm-wait", "--only", "gpt-short/*",
        "--no-telemetry", "--run-id", "via-submitit", cwd=tmp_path, env=env, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    records = _records(tmp_path / "results" / "sharded" / "via-submitit")
    assert sorted(r["shard"]["index"] for r in records) == [0, 0, 1, 1]
