"""Faults of a worker: out of memory recognised by every allocator message, a loss that becomes
non-finite, workers that die with their parent, the safe import path, and a SIGKILL's reason."""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from hlbench.records import read_records
from hlbench.sweep import memwatch
from hlbench.sweep.blame import died
from hlbench.techniques import test_hooks
from hlbench.techniques.oom import is_oom
from hlbench.worker.train import NonFiniteLoss, check_finite
from tests.helpers import REPO, run_cli, suite_yaml

# What the allocators say, as torch, TF / XLA and NumPy word it on CPUs and GPUs.
OOM_MESSAGES = [
    "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
    "you tried to allocate 1610612736 bytes. Error code 12 (Cannot allocate memory)",
    "CUDA out of memory. Tried to allocate 20.00 MiB (GPU 0; 79.15 GiB total capacity)",
    "CUDA error: out of memory\nCUDA kernel errors might be asynchronously reported",
    "MPS backend out of memory (MPS allocated: 17.00 GB, other allocations: 1.00 GB)",
    "HIP out of memory. Tried to allocate 2.00 GiB",
    "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`",
    "cuDNN error: CUDNN_STATUS_ALLOC_FAILED",
    "std::bad_alloc",
    "OOM when allocating tensor with shape[32768,64,256] and type float on "
    "/job:localhost/replica:0/task:0/device:GPU:0 by allocator GPU_0_bfc",
    "Allocator (GPU_0_bfc) ran out of memory trying to allocate 1.50GiB",
    "Out of memory while trying to allocate 1610612736 bytes.",
    "RESOURCE_EXHAUSTED: Out of memory while trying to allocate 12.00GiB",
    "ResourceExhaustedError: {{function_node __wrapped__MatMul}} OOM when allocating tensor",
    "failed to allocate memory [Op:AddV2]",
    "Dst tensor is not initialized. [Op:_EagerConst]",
    "Unable to allocate 12.0 GiB for an array with shape (32768, 65536) and data type float64",
    "cudaErrorMemoryAllocation: out of memory",
]
NOT_OOM = [
    "mat1 and mat2 shapes cannot be multiplied (4x64 and 32x64)",
    "CUDA error: device-side assert triggered",
    "index 300 is out of range",
    "Expected all tensors to be on the same device",
    "loss became non-finite (nan) at step 7",
]


@pytest.mark.parametrize("message", OOM_MESSAGES)
def test_every_allocator_message_is_an_oom(message):
    assert is_oom(RuntimeError(message))
    try:
        try:
            raise RuntimeError(message)
        except RuntimeError as inner:
            raise ValueError("wrapped") from inner
    except ValueError as outer:
        assert is_oom(outer)  # a framework's wrapper around the allocator's error


@pytest.mark.parametrize("message", NOT_OOM)
def test_other_failures_are_not_ooms(message):
    assert not is_oom(RuntimeError(message))


def test_oom_classes():
    class OutOfMemoryError(RuntimeError):  # torch.cuda.OutOfMemoryError's name
        pass

    assert is_oom(MemoryError()) and is_oom(OutOfMemoryError("")) and not is_oom(KeyError("x"))


@pytest.mark.parametrize("message", OOM_MESSAGES[:3])
def test_torch_backend_uses_the_table(message):
    pytest.importorskip("torch")
    from hlbench.backends.torch.backend import TorchBackend

    assert TorchBackend().is_oom(RuntimeError(message))
    assert not TorchBackend().is_oom(RuntimeError(NOT_OOM[0]))


def test_tf_backend_uses_the_table():
    tf = pytest.importorskip("tensorflow")
    from hlbench.backends.tf.backend import TFBackend

    backend = TFBackend()
    assert backend.is_oom(tf.errors.ResourceExhaustedError(None, None, "OOM when allocating"))
    assert backend.is_oom(tf.errors.InternalError(None, None, "Dst tensor is not initialized."))
    assert backend.is_oom(tf.errors.UnknownError(None, None, "failed to allocate memory"))
    assert not backend.is_oom(tf.errors.InvalidArgumentError(None, None, NOT_OOM[0]))


def _run_limited(args: list[str], cwd: Path, address_space: int) -> subprocess.CompletedProcess:
    def limit() -> None:  # the worker inherits the limit from `hlbench run`
        resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))

    return subprocess.run(
        [sys.executable, "-m", "hlbench", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
        preexec_fn=limit,
    )


def _torch_address_space() -> int:
    """Bytes of address space a Python that imported torch maps (VmPeak)."""
    probe = "import torch; print(open('/proc/self/status').read())"
    status = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    (line,) = [line for line in status.splitlines() if line.startswith("VmPeak:")]
    return int(line.split()[1]) * 1024


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc: Linux")
def test_torch_cpu_oom_under_an_address_space_limit_is_recorded_oom(write_suite, tmp_path):
    pytest.importorskip("torch")
    suite = suite_yaml(
        name="oom",
        # logits of 64 × 64 × 65536 fp32: 1 GiB per tensor, more than the limit leaves
        workloads=[
            {"model": "gpt", "size": "tiny", "vocab_size": 65536, "seq_len": 64, "batch_size": 64}
        ],
        measurement={"warmup_steps": 1, "steps": 1, "windows": 1, "eval_batches": 1},
    )
    proc = _run_limited(
        ["run", str(write_suite(suite)), "--quiet", "--no-telemetry", "--results-dir", "results"],
        tmp_path,
        _torch_address_space() + (3 << 29),  # torch's own mappings (a CUDA build's are larger)
    )
    assert proc.returncode == 1, proc.stderr
    ((record,),) = [read_records(p) for p in (tmp_path / "results").glob("*/*.jsonl")]
    assert record["status"] == "oom", record["reason"]
    assert "allocate" in record["reason"]
    assert record["metrics"] is None


# ------------------------------------------------------------------------------------------------
# A loss that becomes non-finite


def _cell(level: str, launch: object = None) -> SimpleNamespace:
    return SimpleNamespace(axes={"precision": level}, launch=launch)


@pytest.mark.parametrize("level", ["fp32", "tf32", "bf16", "bf16-pure"])
@pytest.mark.parametrize(
    ("losses", "eval_loss", "reason"),
    [
        ([5.0, 4.0, float("nan"), float("nan")], 3.0, "loss became non-finite (nan) at step 2"),
        ([5.0, float("inf")], None, "loss became non-finite (inf) at step 1"),
        ([5.0, 4.0], float("-inf"), "held-out loss became non-finite (-inf) after the last step"),
    ],
)
def test_nonfinite_loss_without_loss_scaling_fails_the_cell(level, losses, eval_loss, reason):
    with pytest.raises(NonFiniteLoss, match=re.escape(reason)):
        check_finite(_cell(level), None, losses, eval_loss)


def test_finite_losses_and_fp16_overflow_steps_pass():
    check_finite(_cell("fp32"), None, [5.0, 4.0, 3.0], 2.5)
    check_finite(_cell("fp16"), None, [5.0, float("inf"), 4.0], 3.0)  # a skipped overflow step


def test_ranks_agree_on_the_first_nonfinite_step():
    class TwoRanks:
        def all_gather_objects(self, obj):
            return [obj, [1, "inf"]]  # the other rank's loss went non-finite first

    with pytest.raises(NonFiniteLoss, match=r"\(inf\) at step 1$"):
        check_finite(_cell("bf16", launch=True), TwoRanks(), [5.0, 4.0, float("nan")], None)


def test_fp32_training_that_turns_nan_is_an_error_record(write_suite, tmp_path):
    pytest.importorskip("torch")
    suite = write_suite(suite_yaml(name="nan"))
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        test_hooks.NONFINITE_STEP_ENV: "2",  # AdamW on an infinite gradient: NaN weights after it
    }
    proc = run_cli("run", str(suite), "--quiet", "--results-dir", "results", cwd=tmp_path, env=env)
    assert proc.returncode == 1, proc.stderr
    ((record,),) = [read_records(p) for p in (tmp_path / "results").glob("*/*.jsonl")]
    assert record["status"] == "error"
    assert record["reason"] == "NonFiniteLoss: loss became non-finite (nan) at step 3"
    assert record["metrics"] is None and record["loss"] is None


# ------------------------------------------------------------------------------------------------
# Workers die with their parent; nothing in the current directory is imported

FAULT_SUITE = suite_yaml(
    name="faults",
    backends=["fault"],
    workloads=[{"model": "gpt", "size": "tiny", "seq_len": 8, "batch_size": 60}],
    axes={"accumulation": [1, 2]},
    measurement={"warmup_steps": 1, "steps": 2, "windows": 2, "timeout_s": 60, "eval_batches": 1},
    device=None,
)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_worker_dies_with_its_sigkilled_parent(write_suite, fault_env, tmp_path):
    env = {**fault_env, "HLBENCH_TEST_FAULTS": json.dumps({"ga1": "hang"})}
    suite = write_suite(FAULT_SUITE.replace("[1, 2]", "[1]"))
    parent = subprocess.Popen(
        [sys.executable, "-m", "hlbench", "run", str(suite), "--quiet"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    pidfile = tmp_path / "pids"
    try:
        deadline = time.monotonic() + 60
        while not (pidfile.exists() and len(pidfile.read_text().split()) == 2):
            assert time.monotonic() < deadline and parent.poll() is None, "the worker never hung"
            time.sleep(0.1)
        worker, grandchild = map(int, pidfile.read_text().split())
        parent.kill()  # SIGKILL: the parent cannot stop its worker itself
        parent.wait()
        deadline = time.monotonic() + 5
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(worker), "the worker outlived its parent by 5 s"
    finally:
        parent.kill()
        for pid in map(int, pidfile.read_text().split() if pidfile.exists() else []):
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()  # the hang's own `sleep` child is not a worker


def _shadow_modules(directory: Path) -> None:
    for shadow in ("psutil", "numpy"):  # the worker imports both
        (directory / f"{shadow}.py").write_text(f"raise ImportError('the cwd {shadow} ran')\n")


def test_a_module_in_the_current_directory_is_not_imported(write_suite, fault_env, tmp_path):
    suite = write_suite(FAULT_SUITE.replace("[1, 2]", "[1]"))
    _shadow_modules(tmp_path)
    proc = subprocess.run(
        # -P for the parent too, as the `hlbench` console script is (its sys.path[0] is bin/)
        [sys.executable, "-P", "-m", "hlbench", "run", str(suite), "--quiet"],
        cwd=tmp_path,
        env=fault_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    ((record,),) = [read_records(p) for p in (tmp_path / "results").glob("*/*.jsonl")]
    assert record["status"] == "ok", record["reason"]


# ------------------------------------------------------------------------------------------------
# A SIGKILL's reason names the OOM killer only on evidence


def test_a_person_s_sigkill_does_not_blame_the_oom_killer(write_suite, fault_env, tmp_path):
    env = {**fault_env, "HLBENCH_TEST_FAULTS": json.dumps({"ga1": "kill"})}
    suite = write_suite(FAULT_SUITE.replace("[1, 2]", "[1]"))
    proc = run_cli("run", str(suite), "--quiet", cwd=tmp_path, env=env)
    assert proc.returncode == 1, proc.stderr
    ((record,),) = [read_records(p) for p in (tmp_path / "results").glob("*/*.jsonl")]
    assert record["status"] == "crashed" and record["signal"] == "SIGKILL"
    assert record["reason"] == "worker killed by SIGKILL"


def test_sigkill_reason_with_and_without_memory_evidence():
    assert died(-9, "", "worker")["reason"] == "worker killed by SIGKILL"
    evidence = "the cell's processes held 93% of memory"
    assert died(-9, "", "rank 1", evidence)["reason"] == (
        "rank 1 killed by SIGKILL (likely the kernel's OOM killer: "
        "the cell's processes held 93% of memory)"
    )
    assert died(-15, "", "worker", evidence)["reason"] == "worker killed by SIGTERM"


@pytest.mark.parametrize(
    ("peak", "available", "kills", "evidence"),
    [
        (10, 900, (0, 0), None),
        (600, 400, (0, 0), "the cell's processes held 60% of memory"),
        (10, 50, (0, 0), "available memory fell to 5%"),
        (10, 900, (2, 3), "the memory cgroup's oom_kill count rose"),
        (10, 900, (None, None), None),
    ],
)
def test_memory_watch_evidence(monkeypatch, peak, available, kills, evidence):
    counts = iter(kills)
    monkeypatch.setattr(memwatch, "oom_kill_count", lambda: next(counts))
    monkeypatch.setattr(memwatch, "memory_limit", lambda: 1000)
    watch = memwatch.MemoryWatch()
    watch.peak_rss, watch.min_available = peak, available
    assert watch.oom_kill_evidence() == evidence


def test_memory_watch_samples_real_processes():
    watch = memwatch.MemoryWatch()
    watch.sample([psutil.Process()])
    assert 0 < watch.peak_rss < watch.limit and watch.min_available > 0
    assert watch.oom_kill_evidence() is None  # this test process holds little memory


def test_torchrun_agent_and_ranks_die_with_the_sigkilled_parent(tmp_path):
    pytest.importorskip("torch")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        suite_yaml(name="dp", measurement={"warmup_steps": 1, "steps": 2, "timeout_s": 120})
        + f"launcher: {{nproc_per_node: 2, port: {port}, torch: ddp}}\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
        "HLBENCH_TEST_STEP_DELAY_S": "60",  # every rank sleeps in its first step
    }
    _shadow_modules(tmp_path)  # torchrun's ranks must not import them either
    parent = subprocess.Popen(
        [sys.executable, "-P", "-m", "hlbench", "run", str(suite), "--quiet", "--no-telemetry"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 90
        while len(_cell_processes(parent.pid)) < 3:  # the agent and its 2 ranks
            assert time.monotonic() < deadline and parent.poll() is None, "no ranks started"
            time.sleep(0.2)
        time.sleep(1)  # the ranks are past their startup (the prctl)
        processes = _cell_processes(parent.pid)
        parent.kill()
        parent.wait()
        gone, alive = psutil.wait_procs(processes, timeout=5)
        assert alive == [], [p.cmdline() for p in alive]
    finally:
        parent.kill()
        for proc in _cell_processes(parent.pid):
            with contextlib.suppress(psutil.Error):
                proc.kill()


def _cell_processes(parent_pid: int) -> list[psutil.Process]:
    """The processes of the cell `hlbench run` started (by their HLBENCH_PARENT_PID, which
    survives the parent's death)."""
    out = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            mine = proc.environ().get("HLBENCH_PARENT_PID") == str(parent_pid)
            if mine and proc.status() != psutil.STATUS_ZOMBIE:
                out.append(proc)
    return out
