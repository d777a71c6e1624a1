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
    metrics = record["metrics"]
    assert metrics["mfu_peak_source"].startswith("calibration: numpy float32 GEMM")
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
