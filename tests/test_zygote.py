"""Pre-imported workers (hlbench.worker.zygote, hlbench.sweep.zygote): every cell still gets a
process of its own, forked from one zygote per backend that dies with the run; faults, timeouts
and the opt-out behave as with freshly started workers."""

from __future__ import annotations

import json
import time

import psutil
import pytest

from hlbench.records import read_records
from tests.helpers import run_cli, suite_yaml

SUITE = suite_yaml(
    name="zygote",
    backends=["fault"],
    workloads=[{"model": "gpt", "size": "tiny", "seq_len": 8, "batch_size": 60}],
    axes={"accumulation": [1, 2, 4]},
    measurement={
        "warmup_steps": 1,
        "steps": 2,
        "windows": 1,
        "repeats": 2,
        "timeout_s": 20,
        "eval_batches": 1,
    },
    device=None,
)


def _run(tmp_path, env, suite_text=SUITE):
    suite = tmp_path / "suite.yaml"
    suite.write_text(suite_text)
    proc = run_cli("run", str(suite), "--quiet", "--results-dir", "res", cwd=tmp_path, env=env)
    records_file = next((tmp_path / "res" / "zygote").glob("*.jsonl"))
    return proc, read_records(records_file), records_file


def _worker_env(record):
    return record["env"]["framework"]


def test_every_cell_is_its_own_process_forked_from_one_zygote(tmp_path, fault_env):
    proc, records, records_file = _run(tmp_path, fault_env)
    assert proc.returncode == 0, proc.stderr
    assert [r["status"] for r in records] == ["ok"] * 6
    pids = {_worker_env(r)["pid"] for r in records}
    parents = {_worker_env(r)["ppid"] for r in records}
    assert len(pids) == 6  # a fresh process per cell and repeat
    (zygote,) = parents  # all forked from the one zygote of the backend
    assert (records_file.with_suffix(".logs") / "zygote-fault.log").exists()
    # no process outlives its run: the zygote is gone once `hlbench run` has returned
    deadline = time.monotonic() + 5
    while psutil.pid_exists(zygote) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not psutil.pid_exists(zygote) or psutil.Process(zygote).status() == "zombie"


def test_preimport_off_starts_each_worker_from_the_run(tmp_path, fault_env):
    env = {**fault_env, "HLBENCH_PREIMPORT": "0"}
    proc, records, records_file = _run(tmp_path, env)
    assert proc.returncode == 0, proc.stderr
    parents = {_worker_env(r)["ppid"] for r in records}
    assert len({_worker_env(r)["pid"] for r in records}) == 6
    assert len(parents) == 1  # the `hlbench run` process itself
    assert not (records_file.with_suffix(".logs") / "zygote-fault.log").exists()


@pytest.mark.parametrize(
    "fault, status",
    [("kill", "crashed"), ("exit", "crashed"), ("raise", "error"), ("hang", "timeout")],
)
def test_faults_of_forked_workers_are_recorded_and_the_run_goes_on(
    tmp_path, fault_env, fault, status
):
    env = {**fault_env, "HLBENCH_TEST_FAULTS": json.dumps({"ga2": fault})}
    text = SUITE.replace("repeats: 2", "repeats: 1").replace("timeout_s: 20", "timeout_s: 4")
    proc, records, _ = _run(tmp_path, env, text)
    assert proc.returncode == 1
    by_ga = {r["cell"]["axes"]["accumulation"]: r for r in records}
    assert by_ga[2]["status"] == status, by_ga[2]
    assert by_ga[1]["status"] == by_ga[4]["status"] == "ok"
    if fault == "hang":  # the hung worker and its own child were killed with the group
        for pid in map(int, (tmp_path / "pids").read_text().split()):
            assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"


def test_records_say_how_the_worker_started_and_compare_refuses_to_mix_them(tmp_path, fault_env):
    text = SUITE.replace("repeats: 2", "repeats: 1")
    forked_dir, spawned_dir = tmp_path / "forked", tmp_path / "spawned"
    forked_dir.mkdir()
    spawned_dir.mkdir()
    _, forked, forked_file = _run(forked_dir, fault_env, text)
    _, spawned, spawned_file = _run(spawned_dir, {**fault_env, "HLBENCH_PREIMPORT": "0"}, text)
    assert {r["worker_start"] for r in forked} == {"forked"}
    assert {r["worker_start"] for r in spawned} == {"spawned"}
    proc = run_cli("compare", str(spawned_file), str(forked_file), cwd=tmp_path, env=fault_env)
    assert proc.returncode == 2
    assert "worker_start" in proc.stderr + proc.stdout


def test_gpu_cells_fork_only_when_asked(monkeypatch, tmp_path):
    from hlbench.sweep import zygote

    monkeypatch.setattr(zygote, "visible_gpus", lambda: ["0"])
    auto = zygote.Zygotes(tmp_path)
    assert auto.applies("cpu") and not auto.applies("auto") and not auto.applies("cuda:0")
    forced = zygote.Zygotes(tmp_path, forced=True)
    assert forced.applies("auto") and forced.applies("cuda")
    monkeypatch.setattr(zygote, "visible_gpus", lambda: [])
    assert zygote.Zygotes(tmp_path).applies("auto")
    for value, expected in (("0", "off"), ("1", "on"), ("", "auto"), ("off", "off")):
        monkeypatch.setenv(zygote.PREIMPORT_ENV, value)
        assert zygote.mode() == expected


def test_a_killed_zygote_fails_only_the_running_cell_and_the_run_goes_on(tmp_path, fault_env):
    import subprocess
    import sys

    env = {**fault_env, "HLBENCH_TEST_FAULTS": json.dumps({"ga2": "hang"})}
    text = SUITE.replace("repeats: 2", "repeats: 1").replace("timeout_s: 20", "timeout_s: 60")
    (tmp_path / "suite.yaml").write_text(text)
    cmd = [sys.executable, "-m", "hlbench", "run", "suite.yaml", "--quiet", "--results-dir", "res"]
    run = subprocess.Popen(cmd, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    pidfile = tmp_path / "pids"
    deadline = time.monotonic() + 60
    while not (pidfile.exists() and len(pidfile.read_text().split()) == 2):
        assert time.monotonic() < deadline and run.poll() is None, "the cell never hung"
        time.sleep(0.1)
    worker, grandchild = map(int, pidfile.read_text().split())
    psutil.Process(worker).parent().kill()  # the zygote
    assert run.wait(timeout=60) == 1, run.stderr.read()
    records = read_records(next((tmp_path / "res" / "zygote").glob("*.jsonl")))
    by_ga = {r["cell"]["axes"]["accumulation"]: r for r in records}
    assert by_ga[2]["status"] == "crashed"  # its worker died with the zygote
    assert by_ga[1]["worker_start"] == "forked" and by_ga[1]["status"] == "ok"
    assert by_ga[4]["worker_start"] == "spawned" and by_ga[4]["status"] == "ok"
    for pid in (worker, grandchild):  # the hung worker's own child too: none outlives the run
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
