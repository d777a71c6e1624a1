"""Telemetry: samples aligned to the measured windows, NVML through a fake library, graceful
degradation
on this GPU-less machine, RAPL counters, derived energy/throttling/MFU, and the FLOPs-per-token
formula."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from hlbench.telemetry import derive, peaks
from hlbench.telemetry.collect import nvml_indices
from hlbench.telemetry.host import RAPL
from hlbench.telemetry.nvml import THROTTLE_BITS, open_nvml
from hlbench.telemetry.sampler import Sampler
from tests.helpers import REPO, run_cli

SLOW_SUITE = """\
backends: [fault]
device: cpu
workloads: [{model: gpt, size: tiny, seq_len: 16, batch_size: 2}]
measurement: {warmup_steps: 1, steps: 6, windows: 2, eval_batches: 0, timeout_s: 60}
telemetry: {interval_s: 0.02}
"""


def _records(root: Path) -> list[dict]:
    return [
        json.loads(line)
        for f in sorted(root.rglob("*.jsonl"))
        for line in f.read_text().splitlines()
    ]


def test_host_samples_fall_inside_the_measured_windows(write_suite, fault_env, tmp_path):
    env = {**fault_env, "HLBENCH_TEST_STEP_SLEEP_S": "0.05"}  # windows of 0.3 s: ~15 samples each
    proc = run_cli(
        "run",
        str(write_suite(SLOW_SUITE)),
        "--quiet",
        "--results-dir",
        str(tmp_path),
        cwd=REPO,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    (record,) = _records(tmp_path)
    telemetry, windows = record["telemetry"], record["timing"]["window_monotonic_s"]
    derived = telemetry["derived"]
    assert telemetry["sources"] == {
        "host": True,
        "nvml": False,
        "rapl": telemetry["sources"]["rapl"],
    }
    assert "nvml" in telemetry["telemetry_status"]  # no GPU here: a reason, not a failure
    samples_file = next(tmp_path.rglob(telemetry["samples_path"].split("/")[-1]))
    with open(samples_file) as f:
        times = [float(row["t_monotonic_s"]) for row in csv.DictReader(f)]
    inside = [t for t in times if any(s <= t <= e for s, e in windows)]
    assert derived["n_samples_in_windows"] == len(inside) >= 10
    assert (
        min(times) < windows[0][0] and max(times) > windows[-1][1]
    )  # the sampler spans the worker's life
    assert derived["host_rss_peak_bytes"] > 10_000_000
    assert derived["host_cpu_util_mean_pct"] is not None
    # MFU on a CPU: the fault backend's framework is NumPy, so the calibration is NumPy's fp32 GEMM
    # (the machine's best so far: another framework's, when a test calibrated one before)
    metrics = record["metrics"]
    assert metrics["mfu_peak_source"].startswith("calibration: ")
    assert metrics["mfu_dtype_peak_source"].startswith("calibration: numpy ")
    assert metrics["mfu_dtype_peak_flops"] <= metrics["mfu_peak_flops"]
    assert metrics["mfu"] == pytest.approx(
        metrics["tokens_per_s"]
        * record["backend_info"]["flops_per_token"]
        / metrics["mfu_peak_flops"]
    )


def test_telemetry_off_writes_no_samples(write_suite, fault_env, tmp_path):
    suite = write_suite(
        SLOW_SUITE.replace("telemetry: {interval_s: 0.02}", "telemetry: {enabled: false}")
    )
    proc = run_cli(
        "run", str(suite), "--quiet", "--results-dir", str(tmp_path), cwd=REPO, env=fault_env
    )
    assert proc.returncode == 0, proc.stderr
    (record,) = _records(tmp_path)
    assert record["telemetry"] is None and not list(tmp_path.rglob("*.csv"))


def test_real_nvml_failure_on_this_machine_degrades_to_a_reason():
    pytest.importorskip("pynvml")
    probe, reason = open_nvml([0], os.getpid())
    if probe is not None:
        probe.close()
        pytest.skip("this machine has a working NVML")
    assert reason.startswith("NVML unavailable: NVMLError")


def test_missing_nvidia_ml_py_degrades_to_a_reason():
    code = (
        "import sys; sys.modules['pynvml'] = None\n"
        "from hlbench.telemetry.nvml import open_nvml\n"
        "probe, reason = open_nvml([0], 1); print(reason)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert out.startswith("nvidia-ml-py is not installed")


class FakeNVML:
    """The parts of pynvml the sampler calls, with a scripted GPU: 1 W → 100 W power ramp, an energy
    counter that advances 50 J per second, memory growing, a power cap throttle on every other
    sample,
    a foreign PID in the process list and no memory-clock support."""

    NVML_CLOCK_SM, NVML_CLOCK_MEM = 1, 2

    class NVMLError(Exception):
        pass

    class NVMLError_NotSupported(NVMLError):
        pass

    def __init__(self) -> None:
        self.t = 0.0  # seconds of fake time, advanced by the test
        self.reads = 0

    def nvmlDeviceGetCount(self):
        return 2

    def nvmlDeviceGetHandleByIndex(self, i):
        return f"h{i}"

    def nvmlSystemGetDriverVersion(self):
        return b"550.54.15"

    def nvmlSystemGetNVMLVersion(self):
        return "12.550.54.15"

    def nvmlDeviceGetName(self, h):
        return "NVIDIA H200"

    def nvmlDeviceGetEnforcedPowerLimit(self, h):
        return 700_000

    def nvmlShutdown(self):
        pass

    def nvmlDeviceGetMemoryInfo(self, h):
        return SimpleNamespace(used=int(1e9 + 1e8 * self.t), total=int(141e9))

    def nvmlDeviceGetUtilizationRates(self, h):
        return SimpleNamespace(gpu=90, memory=40)

    def nvmlDeviceGetPowerUsage(self, h):
        return 100_000  # mW

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        return int(1e6 + 50_000 * self.t)  # mJ

    def nvmlDeviceGetClockInfo(self, h, kind):
        if kind == self.NVML_CLOCK_MEM:
            raise self.NVMLError_NotSupported("Not Supported")
        return 1980

    def nvmlDeviceGetCurrentClocksEventReasons(self, h):
        self.reads += 1
        return (
            THROTTLE_BITS["sw_power_cap"] | 0x1 if self.reads % 2 else 0x1
        )  # idle bit alone is not throttling

    def nvmlDeviceGetComputeRunningProcesses(self, h):
        return [SimpleNamespace(pid=4242, usedGpuMemory=123)]


def test_nvml_sampling_against_a_fake_library_and_the_derived_figures():
    fake = FakeNVML()
    probe, reason = open_nvml([1], pid=99, nvml=fake)
    assert reason is None and probe.indices == [1]
    assert (
        probe.info()["devices"][0]["name"] == "NVIDIA H200"
        and probe.info()["driver_version"] == "550.54.15"
    )
    sampler = Sampler(host=None, nvml=probe, interval_s=0.1)
    for i in range(41):  # 4 s of fake time, a sample every 0.1 s
        fake.t = 0.1 * i
        sampler.sample_once()
        sampler.rows[-1]["t_monotonic_s"] = fake.t  # fake time stands in for the monotonic clock
    rows = sampler.rows
    assert (
        rows[0]["gpu_index"] == 1
        and rows[0]["gpu_power_w"] == 100.0
        and rows[0]["gpu_mem_clock_mhz"] is None
    )
    status = probe.reasons()
    assert "NVMLError_NotSupported" in status["gpu_mem_clock_mhz"]
    assert "worker PID 99 not among" in status["gpu_proc_mem_used_bytes"]

    windows = [[0.95, 2.05], [2.35, 3.45]]  # 2.2 s measured; the counter gains 50 J/s → 110 J
    summary = derive.summarize(rows, windows, tokens_in_windows=11_000)
    d = summary["derived"]
    assert summary["reasons"] == {}
    assert d["gpu_energy_j"] == pytest.approx(110.0)
    assert d["gpu_energy_per_token_j"] == pytest.approx(0.01)
    assert d["gpu_power_mean_w"] == 100.0
    assert d["gpu_mem_used_peak_bytes"] == pytest.approx(1e9 + 1e8 * 3.4, rel=1e-6)
    assert d["gpu_proc_mem_used_peak_bytes"] is None
    assert 0.4 <= d["gpu_throttled_fraction"] <= 0.6 and d["gpu_throttle_reasons_seen"] == [
        "sw_power_cap"
    ]
    assert d["n_samples_in_windows"] == 22


def test_energy_of_a_window_too_short_for_the_counter_is_null_with_the_reason():
    rows = [{"t_monotonic_s": 0.1 * i, "gpu_index": 0, "gpu_energy_j": 10.0 * i} for i in range(20)]
    summary = derive.summarize(rows, [[0.5, 0.8]], tokens_in_windows=1000)
    assert (
        summary["derived"]["gpu_energy_j"] is None
        and summary["derived"]["gpu_energy_per_token_j"] is None
    )
    assert "shorter than" in summary["reasons"]["gpu_energy_j"]


def test_rapl_counters_sum_packages_and_survive_a_wrap(tmp_path):
    for pkg, energy in ((0, 1_000_000), (1, 2_000_000)):
        zone = tmp_path / f"intel-rapl:{pkg}"
        zone.mkdir()
        (zone / "max_energy_range_uj").write_text("10000000")
        (zone / "energy_uj").write_text(str(energy))
        (tmp_path / f"intel-rapl:{pkg}:0").mkdir()  # a subzone (core): not counted again
    rapl = RAPL(tmp_path)
    assert rapl.reason is None and len(rapl.domains) == 2
    assert rapl.energy_j() == pytest.approx(3.0)
    (tmp_path / "intel-rapl:0" / "energy_uj").write_text("500000")  # wrapped past 10 J
    assert rapl.energy_j() == pytest.approx(10.5 + 2.0)
    assert "absent" in RAPL(tmp_path / "nope").reason


@pytest.mark.parametrize(
    "name,precision,expected_tflops",
    [
        ("NVIDIA H200", "bf16", 989.4),
        ("NVIDIA H200", "bf16-pure", 989.4),
        ("NVIDIA H100 80GB HBM3", "fp32", 67.0),
        ("NVIDIA H100 PCIe", "fp8", 1513.0),
        ("NVIDIA A100-SXM4-80GB", "tf32", 156.0),
        ("NVIDIA L40S", "fp16", 362.05),
        ("NVIDIA L4", "bf16", 121.0),
        ("NVIDIA A10", "fp32", 31.2),
        ("Tesla T4", "fp16", 65.0),
        ("Tesla V100-SXM2-16GB", "fp32", 15.7),
        ("NVIDIA GeForce RTX 4090", "bf16", 165.2),
    ],
)
def test_gpu_peak_table(name, precision, expected_tflops):
    flops, source = peaks.gpu_peak(name, precision)
    assert flops == pytest.approx(expected_tflops * 1e12) and name in source


@pytest.mark.parametrize(
    "name,precision", [("Tesla T4", "bf16"), ("Some Future GPU", "fp32"), (None, "fp32")]
)
def test_unknown_gpu_or_precision_has_no_peak_and_says_why(name, precision):
    flops, reason = peaks.gpu_peak(name, precision)
    assert flops is None and reason


def test_cuda_visible_devices_maps_to_nvml_indices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,1")
    assert (
        nvml_indices("auto") == [3]
        and nvml_indices("cuda:1") == [1]
        and nvml_indices("cuda:2") == []
    )
    assert nvml_indices("cpu") == []
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert nvml_indices("cuda") == [0]


@pytest.mark.parametrize("size", ["tiny", "small", "medium", "gpt2-124m"])
def test_flops_per_token_formula_matches_torch_flop_counter(size):
    """6·N + 12·L·d·T against FlopCounterMode on a forward + backward of the real PyTorch module
    (on the meta device: shapes only, no arithmetic)."""
    torch = pytest.importorskip("torch")
    from torch.utils.flop_counter import FlopCounterMode

    from hlbench.backends.torch.models import build_model
    from hlbench.workloads import get_spec

    spec = get_spec("gpt", size, None)
    T = spec.context
    with torch.device("meta"):
        model = build_model(spec)
        idx = torch.zeros((1, T), dtype=torch.long)
    counter = FlopCounterMode(display=False)
    with counter:
        model(idx).sum().backward()
    measured = counter.get_total_flops() / T
    assert spec.flops_per_token(T) == pytest.approx(measured, rel=0.02)


# --- MFU peaks: one CPU peak per machine, cached; the best GPU peak; no MFU above 100% ----------


class FakeGemm:
    """A GEMM timer at a fixed rate per dtype; counts the products it was asked to time."""

    def __init__(self, rates: dict[str, float]) -> None:
        self.rates, self.calls = rates, []

    def __call__(self, dtype, shape, reps):
        self.calls.append((dtype, tuple(shape)))
        m, k, n = shape
        return 2.0 * m * k * n / self.rates[dtype], "2"


RATES = {"float32": 50e9, "bfloat16": 120e9, "float16": 10e9}


def test_cpu_peak_is_cached_per_machine_and_reused_across_runs(tmp_path, monkeypatch):
    from hlbench.telemetry import calibration as C

    monkeypatch.setenv(C.CACHE_DIR_ENV, str(tmp_path))
    timer = FakeGemm(RATES)
    best, own = C.cpu_peaks("torch", "torch 2.13.0", "2", timer, [[64, 32, 16]])
    assert best.flops == pytest.approx(120e9) and "bfloat16" in best.source  # best of the dtypes
    assert {d: p.flops for d, p in own.items()} == pytest.approx(RATES)
    timed = {(d, s[1:]) for d, s in timer.calls}  # every dtype over the squares and the workload's
    assert timed >= {(d, (k, n)) for d in C.DTYPES for _, k, n in [*C.SQUARES, [64, 32, 16]]}
    assert (tmp_path / C.CACHE_FILE).is_file()
    # a later run (another process: the cache is the file) measures nothing and divides by the same
    again, _ = C.cpu_peaks("torch", "torch 2.13.0", "2", FakeGemm(RATES), [[64, 32, 16]])
    assert again == best
    # a new workload times only its own new shapes
    newer = FakeGemm(RATES)
    C.cpu_peaks("torch", "torch 2.13.0", "2", newer, [[64, 32, 16], [8, 8, 8]])
    assert {(d, s) for d, s in newer.calls if s != (1, 1, 1)} == {(d, (8, 8, 8)) for d in C.DTYPES}


def test_a_framework_version_change_calibrates_afresh(tmp_path, monkeypatch):
    from hlbench.telemetry import calibration as C

    monkeypatch.setenv(C.CACHE_DIR_ENV, str(tmp_path))
    C.cpu_peaks("torch", "torch 2.13.0", "2", FakeGemm(RATES), [])
    upgraded = FakeGemm({d: r * 2 for d, r in RATES.items()})
    best, own = C.cpu_peaks("torch", "torch 2.14.0", "2", upgraded, [])
    assert len(upgraded.calls) >= 3 * len(C.SQUARES)  # nothing reused from the old version
    assert own["float32"].flops == pytest.approx(100e9) and "2.14.0" in own["float32"].source
    assert best.flops == pytest.approx(240e9)
    # another framework on the same machine shares the machine's best peak
    tf_best, tf_own = C.cpu_peaks("tensorflow", "tensorflow 2.21.0", "2", FakeGemm(RATES), [])
    assert tf_best.flops == pytest.approx(240e9)
    assert tf_own["bfloat16"].flops == pytest.approx(120e9)


def test_the_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    from hlbench.telemetry import calibration as C

    monkeypatch.delenv(C.CACHE_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert C.cache_dir() == tmp_path / "hlbench"
    monkeypatch.setenv(C.CACHE_DIR_ENV, str(tmp_path / "mine"))
    assert C.cache_dir() == tmp_path / "mine"


def test_workload_shapes_are_its_matmuls_trimmed_to_short_products():
    from hlbench.telemetry.calibration import MAX_GEMM_FLOPS, workload_shapes
    from hlbench.workloads import get_spec

    spec = get_spec("gpt", "gpt2-124m")
    assert workload_shapes(spec.param_shapes(), 32) == [
        [32, 768, spec.vocab_size],  # the tied head
        [32, 768, 2304],  # c_attn
        [32, 768, 768],  # c_proj
        [32, 768, 3072],  # c_fc
        [32, 3072, 768],  # mlp c_proj
    ]
    shapes = workload_shapes(spec.param_shapes(), 8 * 1024)
    assert [s[1:] for s in shapes] == [s[1:] for s in workload_shapes(spec.param_shapes(), 32)]
    assert all(2 * m * k * n <= MAX_GEMM_FLOPS and m < 8192 for m, k, n in shapes)


def test_gpu_mfu_is_against_the_best_precision_and_the_dtype_peak_is_beside_it():
    from hlbench.telemetry.mfu import mfu_metrics

    gpus = [{"index": 0, "name": "NVIDIA H100 80GB HBM3"}]
    m = mfu_metrics("torch", "bf16", "cuda:0", gpus, 1e6, 1e8)  # 1e14 FLOP/s achieved
    assert m["mfu_peak_flops"] == pytest.approx(1978.9e12) and "fp8" in m["mfu_peak_source"]
    assert m["mfu"] == pytest.approx(1e14 / 1978.9e12)
    assert m["mfu_dtype"] == pytest.approx(1e14 / 989.4e12) and m["mfu_flag"] is None


def test_an_mfu_above_one_is_flagged_as_a_calibration_problem_not_reported(monkeypatch):
    from hlbench.telemetry import mfu as M

    gpus = [{"index": 0, "name": "NVIDIA A100-SXM4-80GB"}]
    m = M.mfu_metrics("torch", "bf16", "cuda:0", gpus, 1e7, 1e8)  # 1e15 > 312 TFLOP/s
    assert m["mfu"] is None and m["mfu_dtype"] is None
    assert m["mfu_flag"].startswith("calibration problem") and "321%" in m["mfu_flag"]
    assert "calibration problem" in m["mfu_reason"]
    # on a CPU as well: a calibration slower than the training's own matmuls
    slow = FakeGemm({"float32": 1e6, "bfloat16": 1e6, "float16": 1e6})
    monkeypatch.setattr(M, "cpu_timer", lambda framework: (slow, "torch 0", "1"))
    monkeypatch.setattr(M, "cpu_peaks", _no_cache_peaks)
    cpu = M.mfu_metrics("torch", "fp32", "cpu", [], 1e3, 1e6)
    assert cpu["mfu"] is None and cpu["mfu_flag"].startswith("calibration problem")


def _no_cache_peaks(framework, version, threads, timer, shapes):
    from hlbench.telemetry.calibration import Peak

    peak = Peak(1e6, "calibration: fake")
    return peak, {"float32": peak}
