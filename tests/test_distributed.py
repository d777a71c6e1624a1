"""Beyond one device: the suite's `launcher:`, torchrun DDP/FSDP over gloo on the CPU, one record
per data-parallel cell, per-rank failures, and --devices parallel cells."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from hlbench.cell import Cell
from hlbench.errors import UsageError
from hlbench.records import read_records
from hlbench.suite import load_suite
from hlbench.worker.measure import Timing
from hlbench.worker.ranks import distributed_section, max_memory, slowest_timing
from tests.helpers import run_cli, suite_yaml

TORCH_SUITE = suite_yaml(
    name="dp",
    backends=["torch"],
    device="cpu",
    workloads=[{"model": "gpt", "size": "tiny", "batch_size": 8, "variable_length": True}],
    axes={"accumulation": [2]},
    measurement={"warmup_steps": 2, "steps": 3, "windows": 2, "eval_batches": 1, "timeout_s": 120},
)
LAUNCHER = "launcher: {nproc_per_node: 2, port: %d, torch: %s}\n"
# fp32 rounding: the ranks' gradients are summed in another order than one device's
# (measured ≤ 1e-6)
LOSS_ATOL = 1e-5


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _records(results: Path) -> list[dict]:
    return [r for path in sorted(results.glob("*/*.jsonl")) for r in read_records(path)]


def _workers_alive(cwd: Path) -> list[psutil.Process]:
    """hlbench worker processes still running that were started from `cwd` (the test's
    directory)."""
    out = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if (
                "hlbench.worker" in (proc.info["cmdline"] or [])
                and proc.status() != psutil.STATUS_ZOMBIE
                and Path(proc.cwd()) == cwd
            ):
                out.append(proc)
        except psutil.Error:
            continue  # exited meanwhile, or not ours to inspect
    return out


# --- the suite: launcher settings, cells, ids and hashes (no framework needed) --------------------


def test_launcher_shapes_cells_ids_and_batches(write_suite):
    single = load_suite(write_suite(TORCH_SUITE)).cells[0]
    (cell,) = load_suite(write_suite(TORCH_SUITE + LAUNCHER % (29500, "fsdp"))).cells
    assert single.launch is None and cell.launch.to_dict() == {
        "strategy": "fsdp",
        "world_size": 2,
        "nnodes": 1,
        "nproc_per_node": 2,
    }
    assert cell.id == single.id + "/fsdp2" and cell.hash != single.hash
    # hold: global keeps the global batch; each rank's micro-batch is global / (k × ranks)
    assert (cell.workload.global_batch, cell.workload.micro_batch) == (8, 2)
    # where the ranks meet is not part of the cell
    other_port = load_suite(write_suite(TORCH_SUITE + LAUNCHER % (29600, "fsdp"))).cells[0]
    assert other_port.hash == cell.hash
    # hold: micro keeps each rank's micro-batch: global = micro × k × ranks
    micro = load_suite(
        write_suite(
            TORCH_SUITE.replace("batch_size: 8", "batch_size: 3, hold: micro")
            + LAUNCHER % (29500, "ddp")
        )
    ).cells[0]
    assert (micro.workload.global_batch, micro.workload.micro_batch) == (12, 3)


def test_single_device_cells_hash_as_before_launchers(write_suite):
    cell = load_suite(write_suite(TORCH_SUITE)).cells[0]
    data = cell.to_dict()
    del data["launch"]
    legacy = Cell(**data)  # the dataclass default: launch None
    assert legacy.hash == cell.hash
    assert Cell.from_dict(json.loads(json.dumps(cell.to_dict()))).hash == cell.hash


@pytest.mark.parametrize(
    "extra, message",
    [
        ("launcher: {nproc_per_node: 2, nnodes: 2}\n", "hosts: 2 nodes need their 2 addresses"),
        ("launcher: {nproc_per_node: 2, nnodes: 2, hosts: [a]}\n", "1 address(es) for nnodes 2"),
        (
            "launcher: {nproc_per_node: 2, nnodes: 2, hosts: [a, b], tf: mirrored}\n",
            "use multi_worker",
        ),
        ("launcher: {nproc_per_node: 3}\n", "2 steps × 3 ranks do not divide batch_size 8"),
        ("launcher: {nproc_per_node: 2, torch: zero3}\n", "launcher.torch"),
        ("launcher: {nproc_per_node: 0}\n", "launcher.nproc_per_node"),
    ],
)
def test_bad_launchers_are_one_line_usage_errors(write_suite, extra, message):
    with pytest.raises(UsageError) as exc:
        load_suite(write_suite(TORCH_SUITE + extra))
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_pinned_gpu_and_launcher_less_backends_are_rejected(write_suite, fault_env, tmp_path):
    pinned = write_suite(
        TORCH_SUITE.replace("device: cpu", "device: cuda:1") + "launcher: {nproc_per_node: 2}\n"
    )
    with pytest.raises(UsageError, match="pins one GPU"):
        load_suite(pinned)
    fault = write_suite(
        TORCH_SUITE.replace("[torch]", "[fault]") + "launcher: {nproc_per_node: 2}\n"
    )
    with pytest.raises(UsageError, match="'fault' has no data-parallel launcher"):
        load_suite(fault)


def test_cli_rejects_bad_placement(write_suite, tmp_path):
    launched = write_suite(TORCH_SUITE + LAUNCHER % (29500, "ddp"), "l.yaml")
    proc = run_cli("run", str(launched), "--devices", "0,1", cwd=tmp_path)
    assert proc.returncode == 2 and "already gives each cell all the GPUs" in proc.stderr
    proc = run_cli("run", str(launched), "--node-rank", "1", "--dry-run", cwd=tmp_path)
    assert proc.returncode == 2 and "has 1 node(s)" in proc.stderr
    auto = write_suite(TORCH_SUITE.replace("device: cpu", "device: auto"), "a.yaml")
    proc = run_cli(
        "run",
        str(auto),
        "--devices",
        "0,0",
        cwd=tmp_path,
        env={"CUDA_VISIBLE_DEVICES": "0,1", **_base_env()},
    )
    assert proc.returncode == 2 and "distinct GPU indices" in proc.stderr
    proc = run_cli(
        "run",
        str(auto),
        "--devices",
        "0,5",
        cwd=tmp_path,
        env={"CUDA_VISIBLE_DEVICES": "0,1", **_base_env()},
    )
    assert proc.returncode == 2 and "GPU(s) 5 do not exist" in proc.stderr


def _base_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}


# --- combining ranks (framework-neutral) ----------------------------------------------------------


def test_slowest_rank_sets_each_step_and_memory_is_the_max():
    fast = Timing([0.1], [[1.0, 1.0], [1.0]], [2.0, 1.0], [[0, 2], [2, 3]], False, 3).to_dict()
    slow = Timing([0.3], [[1.5, 0.5], [2.0]], [2.1, 2.0], [[5, 7], [7, 9]], False, 3).to_dict()
    per_rank = [
        {
            "rank": r,
            "host": "h",
            "pid": r,
            "device": "cpu",
            "timing": t,
            "memory": {"peak_bytes": m, "reason": None},
        }
        for r, (t, m) in enumerate([(fast, 10), (slow, 7)])
    ]
    timing = slowest_timing(per_rank)
    assert timing.window_step_times_s == [[1.5, 1.0], [2.0]] and timing.window_wall_s == [2.1, 2.0]
    assert timing.warmup_step_times_s == [0.3] and timing.window_monotonic_s == [
        [0, 2],
        [2, 3],
    ]  # the chief's clock
    assert max_memory(per_rank) == {"peak_bytes": 10, "reason": None}
    section = distributed_section({"strategy": "ddp", "world_size": 2}, per_rank)
    assert section["slowest_rank"] == 1 and [r["rank"] for r in section["per_rank"]] == [0, 1]
    uneven = [per_rank[0], {**per_rank[1], "timing": {**slow, "window_step_times_s": [[1.0]]}}]
    with pytest.raises(RuntimeError, match="different windows"):
        slowest_timing(uneven)


# --- torchrun end to end (gloo on this CPU) -------------------------------------------------------


def test_ddp_and_fsdp_train_like_one_process_with_the_same_global_batch(write_suite, tmp_path):
    single = write_suite(TORCH_SUITE, "single.yaml")
    ddp = write_suite(TORCH_SUITE + LAUNCHER % (_free_port(), "ddp"), "ddp.yaml")
    fsdp = write_suite(
        TORCH_SUITE.replace("[2]", "[1]") + LAUNCHER % (_free_port(), "fsdp"), "fsdp.yaml"
    )
    single_ga1 = write_suite(TORCH_SUITE.replace("[2]", "[1]"), "single1.yaml")
    for path in (single, ddp, fsdp, single_ga1):
        proc = run_cli(
            "run",
            str(path),
            "--quiet",
            "--no-telemetry",
            cwd=tmp_path,
            env={"OMP_NUM_THREADS": "1", **_base_env()},
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
    by_id = {r["cell_id"]: r for r in _records(tmp_path / "results")}
    base = "gpt-tiny/torch/fp32/ga{}/none"
    for k, strategy in ((2, "ddp"), (1, "fsdp")):
        one, many = by_id[base.format(k)], by_id[base.format(k) + f"/{strategy}2"]
        losses_one = np.array(one["loss"]["train_loss_per_step"])
        losses_many = np.array(many["loss"]["train_loss_per_step"])
        assert len(losses_one) == len(losses_many) == 8
        np.testing.assert_allclose(losses_many, losses_one, rtol=0, atol=LOSS_ATOL)
        assert abs(many["loss"]["eval_loss"] - one["loss"]["eval_loss"]) < LOSS_ATOL
        # one record for both ranks: global throughput, the slowest rank's steps, every rank's
        # figures
        dist = many["distributed"]
        assert dist["strategy"] == strategy and dist["world_size"] == 2 and dist["processes"] == 2
        assert [r["rank"] for r in dist["per_rank"]] == [0, 1]
        assert len({r["pid"] for r in dist["per_rank"]}) == 2
        slowest = max(r["step_time_median_s"] for r in dist["per_rank"])
        assert many["metrics"]["step_time_median_s"] >= min(
            r["step_time_median_s"] for r in dist["per_rank"]
        )
        assert many["metrics"]["step_time_median_s"] <= slowest * 1.5
        assert many["metrics"]["tokens_per_step"] == 8 * many["cell"]["workload"]["seq_len"]
        assert many["memory"]["host_peak_rss_bytes"] == max(
            r["memory"]["host_peak_rss_bytes"] for r in dist["per_rank"]
        )
        assert "over 2 ranks (gloo)" in many["backend_info"]["strategy"]
        assert one["distributed"] is None


def test_a_rank_killed_mid_run_is_one_crashed_record_and_no_orphans(write_suite, tmp_path):
    suite = write_suite(TORCH_SUITE.replace("[2]", "[1, 2]") + LAUNCHER % (_free_port(), "ddp"))
    env = {**_base_env(), "OMP_NUM_THREADS": "1", "HLBENCH_TEST_KILL_RANK": "1:3"}
    start = time.monotonic()
    proc = run_cli("run", str(suite), "--quiet", "--no-telemetry", cwd=tmp_path, env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    records = _records(tmp_path / "results")
    assert len(records) == 2  # the suite went on after the first cell's crash
    for record in records:
        assert record["status"] == "crashed" and record["signal"] == "SIGKILL", record["reason"]
        assert record["reason"].startswith("rank 1 killed by SIGKILL")
        assert record["metrics"] is None
        assert (
            record["worker_wall_s"] < 60
        )  # torchrun stopped rank 0 at once, not at the gloo timeout
    assert time.monotonic() - start < 120
    assert _workers_alive(tmp_path) == []


def test_a_rank_out_of_memory_is_one_oom_record_naming_it(write_suite, tmp_path):
    suite = write_suite(TORCH_SUITE + LAUNCHER % (_free_port(), "ddp"))
    env = {**_base_env(), "OMP_NUM_THREADS": "1", "HLBENCH_TEST_KILL_RANK": "1:3:oom"}
    proc = run_cli("run", str(suite), "--quiet", "--no-telemetry", cwd=tmp_path, env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    (record,) = _records(tmp_path / "results")
    # rank 0, blocked in the all-reduce, was stopped by torchrun: the record blames rank 1's OOM
    assert record["status"] == "oom" and record["reason"].startswith(
        "rank 1: MemoryError: simulated"
    ), record["reason"]
    assert record["error"]["rank"] == 1 and record["worker_wall_s"] < 60
    assert _workers_alive(tmp_path) == []


def test_a_hung_rank_times_out_the_whole_group(write_suite, tmp_path):
    suite = write_suite(
        TORCH_SUITE.replace("timeout_s: 120", "timeout_s: 12") + LAUNCHER % (_free_port(), "ddp")
    )
    env = {**_base_env(), "OMP_NUM_THREADS": "1", "HLBENCH_TEST_STEP_DELAY_S": "30"}
    proc = run_cli("run", str(suite), "--quiet", "--no-telemetry", cwd=tmp_path, env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    (record,) = _records(tmp_path / "results")
    assert record["status"] == "timeout" and "every process of the cell killed" in record["reason"]
    assert _workers_alive(tmp_path) == []


# --- --devices: independent cells side by side, one per GPU ---------------------------------------


def test_devices_run_cells_concurrently_each_seeing_only_its_gpu(write_suite, fault_env, tmp_path):
    suite = write_suite("""\
        name: par
        backends: [fault]
        workloads: [{model: gpt, size: tiny, seq_len: 8, batch_size: 4}]
        axes: {accumulation: [1, 2, 4]}
        measurement: {warmup_steps: 1, steps: 4, windows: 2, eval_batches: 0}
    """)
    env = {**fault_env, "CUDA_VISIBLE_DEVICES": "3,5", "HLBENCH_TEST_STEP_SLEEP_S": "0.25"}
    proc = run_cli("run", str(suite), "--quiet", "--devices", "0,1", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    records = _records(tmp_path / "results")
    assert sorted(r["cell"]["axes"]["accumulation"] for r in records) == [1, 2, 4]  # each once
    # --devices indexes the parent's visible GPUs; a worker sees exactly one physical GPU
    seen = [r["env"]["framework"]["cuda_visible_devices"] for r in records]
    assert set(seen) <= {"3", "5"} and all(
        r["cuda_visible_device"] == s for r, s in zip(records, seen)
    )
    spans = [
        (r["timing"]["window_monotonic_s"][0][0], r["timing"]["window_monotonic_s"][-1][1])
        for r in records
    ]
    first, second = spans[0], spans[1]
    assert first[0] < second[1] and second[0] < first[1], (
        spans
    )  # the first two cells overlapped in time
    assert seen[0] != seen[1]
    for r in records:  # each worker had its own telemetry (NVML absent here, so host figures only)
        assert r["telemetry"]["sources"]["host"] and r["telemetry"]["n_samples"] > 0


def test_two_nodes_on_localhost_one_cell_record_and_a_follower(write_suite, tmp_path):
    """Two `hlbench run` processes stand in for two machines (static rendezvous at
    hosts[0]:port)."""
    import subprocess
    import sys

    suite = write_suite(
        TORCH_SUITE + "launcher: {nproc_per_node: 1, nnodes: 2, hosts: [127.0.0.1, 127.0.0.1], "
        f"port: {_free_port()}}}\n"
    )
    env = {**_base_env(), "OMP_NUM_THREADS": "1"}
    follower = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hlbench",
            "run",
            str(suite),
            "--quiet",
            "--no-telemetry",
            "--node-rank",
            "1",
            "--results-dir",
            "node1",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    chief = run_cli(
        "run",
        str(suite),
        "--quiet",
        "--no-telemetry",
        "--results-dir",
        "node0",
        cwd=tmp_path,
        env=env,
    )
    out, _ = follower.communicate(timeout=120)
    assert chief.returncode == 0 and follower.returncode == 0, chief.stdout + chief.stderr + out
    (cell_record,) = _records(tmp_path / "node0")
    (follower_record,) = _records(tmp_path / "node1")
    assert cell_record.get("kind", "cell") == "cell" and cell_record["status"] == "ok"
    assert cell_record["cell_id"].endswith("/ddp1x2")  # 1 rank on each of 2 nodes
    assert cell_record["distributed"]["nnodes"] == 2 and [
        r["rank"] for r in cell_record["distributed"]["per_rank"]
    ] == [0, 1]
    assert follower_record["kind"] == "follower" and follower_record["node_rank"] == 1
    assert follower_record["status"] == "ok" and follower_record["metrics"] is None
    assert "this node ran no rank 0" in out
    # a report over both nodes' files has the one cell
    from hlbench.results import load

    frame = load([tmp_path / "node0", tmp_path / "node1"])
    assert len(frame) == 1 and frame.iloc[0]["status"] == "ok"


# --- TensorFlow through the runner: MultiWorkerMirroredStrategy, one process per rank, TF_CONFIG --

TF_SUITE = TORCH_SUITE.replace("[torch]", "[tf]")


def test_tf_multi_worker_trains_and_records_like_one_process(write_suite, tmp_path):
    pytest.importorskip("tensorflow")
    single = write_suite(TF_SUITE, "single.yaml")
    workers = write_suite(
        TF_SUITE + f"launcher: {{nproc_per_node: 2, tf: multi_worker, port: {_free_port()}}}\n",
        "mw.yaml",
    )
    # a RANK inherited from the shell (a cluster pod sets one) must not decide which process is
    # the chief
    env = {**_base_env(), "OMP_NUM_THREADS": "1", "RANK": "1"}
    for path in (single, workers):
        proc = run_cli("run", str(path), "--quiet", cwd=tmp_path, env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    by_id = {r["cell_id"]: r for r in _records(tmp_path / "results")}
    one, many = by_id["gpt-tiny/tf/fp32/ga2/none"], by_id["gpt-tiny/tf/fp32/ga2/none/multi-worker2"]
    np.testing.assert_allclose(
        many["loss"]["train_loss_per_step"],
        one["loss"]["train_loss_per_step"],
        rtol=0,
        atol=LOSS_ATOL,
    )
    dist = many["distributed"]
    assert dist["strategy"] == "multi_worker" and dist["processes"] == 2
    assert [r["rank"] for r in dist["per_rank"]] == [0, 1] and len(
        {r["pid"] for r in dist["per_rank"]}
    ) == 2
    assert "MultiWorkerMirroredStrategy" in many["backend_info"]["strategy"]
    # telemetry followed both worker processes (host RSS summed over them exceeds either rank's
    # own peak)
    rss = many["telemetry"]["derived"]["host_rss_peak_worker_bytes"]
    assert rss > max(r["memory"]["host_peak_rss_bytes"] for r in dist["per_rank"])


def test_tf_multi_worker_rank_killed_is_one_crashed_record_and_no_orphans(write_suite, tmp_path):
    pytest.importorskip("tensorflow")
    suite = write_suite(
        TF_SUITE + f"launcher: {{nproc_per_node: 2, tf: multi_worker, port: {_free_port()}}}\n"
    )
    env = {**_base_env(), "OMP_NUM_THREADS": "1", "HLBENCH_TEST_KILL_RANK": "1:3"}
    proc = run_cli("run", str(suite), "--quiet", "--no-telemetry", cwd=tmp_path, env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    (record,) = _records(tmp_path / "results")
    assert record["status"] == "crashed" and record["reason"].startswith(
        "rank 1 killed by SIGKILL"
    ), record["reason"]
    assert (
        record["worker_wall_s"] < 90
    )  # the surviving rank was stopped, not left to a collective's timeout
    assert _workers_alive(tmp_path) == []


def test_report_sets_data_parallel_cells_beside_their_single_process_twins(tmp_path):
    """The committed CPU records (reports/records/data-parallel): no training needed."""
    from hlbench.reporting import render
    from hlbench.results import load
    from tests.helpers import REPO

    records = sorted((REPO / "reports" / "records" / "data-parallel").glob("*.jsonl"))
    md = render(records, tmp_path / "r.md", draw_plots=False)
    assert "## Data parallel" in md and "parallel: single" in md and "parallel: ddp2" in md
    df = load(records)
    one = df[(df["cell_id"] == "gpt-tiny/torch/fp32/ga1/none")]["tokens_per_s"].iloc[0]
    ddp = df[(df["cell_id"] == "gpt-tiny/torch/fp32/ga1/none/ddp2")]["tokens_per_s"].iloc[0]
    section = md.split("## Data parallel", 1)[1]
    row = next(
        line
        for line in section.splitlines()
        if line.startswith("| gpt-tiny/torch/fp32/ga1/none/ddp2 ")
    )
    assert f"{ddp / one:.2f}×" in row and f"{ddp / one / 2 * 100:.1f}%" in row
    assert any(line.startswith("- Data parallel ddp2 in PyTorch:") for line in md.splitlines())


def test_tf_multi_worker_rank_out_of_memory_reports_at_once(write_suite, tmp_path):
    """A failed rank writes its outcome before leaving tf.distribute (whose shutdown barrier would
    hold it while its peer waits in a collective) and exits; the group is stopped, the record names
    it."""
    pytest.importorskip("tensorflow")
    suite = write_suite(
        TF_SUITE.replace("timeout_s: 120", "timeout_s: 90")
        + f"launcher: {{nproc_per_node: 2, tf: multi_worker, port: {_free_port()}}}\n"
    )
    env = {**_base_env(), "OMP_NUM_THREADS": "1", "HLBENCH_TEST_KILL_RANK": "1:3:oom"}
    proc = run_cli("run", str(suite), "--quiet", "--no-telemetry", cwd=tmp_path, env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    (record,) = _records(tmp_path / "results")
    assert record["status"] == "oom" and record["reason"].startswith(
        "rank 1: MemoryError: simulated"
    ), record["reason"]
    assert record["worker_wall_s"] < 45  # not the 60 s shutdown barrier, not the timeout
    assert _workers_alive(tmp_path) == []


def test_more_ranks_than_gpus_is_skipped_before_anything_starts(write_suite, monkeypatch):
    from hlbench.sweep.launch import too_few_gpus

    (cell,) = load_suite(
        write_suite(TORCH_SUITE.replace("device: cpu", "device: auto") + LAUNCHER % (29500, "ddp"))
    ).cells
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert (
        too_few_gpus(cell)
        == "launcher.nproc_per_node 2 needs 2 GPUs on this node, one per rank; 1 visible"
    )
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert too_few_gpus(cell) is None
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # no GPU: the ranks run on the CPU (device auto)
    assert too_few_gpus(cell) is None
