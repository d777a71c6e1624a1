"""The TensorFlow backend: the same training as PyTorch's (parity), accumulation done right, XLA,
runs."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
torch = pytest.importorskip("torch")

from hlbench import parity  # noqa: E402
from hlbench.backends.tf.backend import TFBackend  # noqa: E402
from hlbench.backends.torch.backend import TorchBackend  # noqa: E402
from hlbench.data import IGNORE_INDEX  # noqa: E402
from hlbench.suite import load_suite  # noqa: E402
from hlbench.worker.inputs import corpus_for, train_batches  # noqa: E402
from hlbench.worker.train import run_cell  # noqa: E402
from tests.helpers import REPO, build_trainer, run_cli  # noqa: E402

SUITE = """\
backends: [torch, tf]
device: cpu
workloads:
  - {model: MODEL, size: tiny, seq_len: 32, batch_size: 8, variable_length: VARLEN}
axes:
  accumulation: [1, 4]
  compile: [false, true]
measurement: {warmup_steps: 1, steps: 3, windows: 1, eval_batches: 1}
"""
BACKENDS = {"torch": TorchBackend, "tf": TFBackend}


def _cells(
    write_suite, model: str = "gpt", variable_length: bool = False
) -> dict[tuple[str, int, bool], object]:
    text = SUITE.replace("MODEL", model).replace("VARLEN", str(variable_length).lower())
    return {
        (c.backend, c.axes["accumulation"], c.axes["compile"]): c
        for c in load_suite(write_suite(text)).cells
    }


def _trainer(cell):
    return build_trainer(BACKENDS[cell.backend](), cell)


@pytest.mark.parametrize("model", ["gpt", "lstm"])
def test_parity_with_pytorch_in_fp32(write_suite, model):
    cells = _cells(write_suite, model)
    group = [cells[("torch", 1, False)], cells[("tf", 1, False)]]
    probes = [parity.probe(c, BACKENDS[c.backend](), parity.DEFAULT_STEPS) for c in group]
    checks = parity.compare(probes, parity.TOLERANCES["fp32"], parity.DEFAULT_STEPS)
    assert [c["name"] for c in checks] == [
        "initial_weights",
        "initial_loss",
        "grad_norm",
        "loss_after_20_steps",
        "grad_max_rel",
    ]
    failed = [c for c in checks if not c["passed"]]
    assert not failed, failed
    # the optimizer really moved both models the same way: 20 per-step losses track each other
    torch_losses, tf_losses = (np.array(p.train_losses) for p in probes)
    assert len(tf_losses) == 20 and tf_losses[-1] < tf_losses[0]
    np.testing.assert_allclose(tf_losses, torch_losses, rtol=1e-4)


@pytest.mark.parametrize(
    ("model", "level"), [("gpt", "bf16"), ("gpt", "fp16"), ("gpt", "bf16-pure"), ("lstm", "fp16")]
)
def test_parity_with_pytorch_at_reduced_precision(write_suite, model, level):
    """The same run at a reduced level in both frameworks stays within that level's tolerances."""
    text = (
        SUITE.replace("MODEL", model)
        .replace("VARLEN", "false")
        .replace("accumulation: [1, 4]", f"accumulation: [1]\n  precision: [{level}]")
    )
    group = [c for c in load_suite(write_suite(text)).cells if not c.axes["compile"]]
    assert [c.backend for c in group] == ["torch", "tf"]
    probes = [parity.probe(c, BACKENDS[c.backend](), parity.DEFAULT_STEPS) for c in group]
    checks = parity.compare(probes, parity.TOLERANCES[level], parity.DEFAULT_STEPS)
    failed = [c for c in checks if not c["passed"]]
    assert not failed, failed
    assert probes[1].train_losses[-1] < probes[1].train_losses[0]


@pytest.mark.parametrize("model", ["gpt", "lstm"])
@pytest.mark.parametrize("variable_length", [False, True])
def test_accumulated_gradient_equals_full_batch_gradient(write_suite, model, variable_length):
    cells = _cells(write_suite, model, variable_length)
    batch = train_batches(cells[("tf", 1, False)], corpus_for(cells[("tf", 1, False)]), 1)[0]
    if variable_length:  # the micro-batches really do hold different numbers of target tokens
        assert len({int((m.targets != IGNORE_INDEX).sum()) for m in batch.split(4)}) > 1
    loss_full, full = _trainer(cells[("tf", 1, False)]).gradients(batch)
    loss_acc, acc = _trainer(cells[("tf", 4, False)]).gradients(batch)
    assert loss_acc == pytest.approx(loss_full, rel=1e-6)
    worst = max(float(np.linalg.norm(acc[n] - full[n]) / np.linalg.norm(full[n])) for n in full)
    assert worst <= 1e-6


def test_gradients_leave_the_model_unchanged_and_xla_trains_the_same(write_suite):
    cells = _cells(write_suite, "gpt")
    graph, xla = _trainer(cells[("tf", 4, False)]), _trainer(cells[("tf", 4, True)])
    assert graph.info()["jit_compile"] is False and xla.info()["jit_compile"] is True
    assert graph.info()["tf32_enabled"] is False  # fp32 means fp32
    assert graph.info()["dtypes"] == {}  # observed in the first train step, not before
    batches = train_batches(cells[("tf", 4, False)], corpus_for(cells[("tf", 4, False)]), 5)
    before = graph.weights()
    graph.gradients(batches[0])
    assert all(np.array_equal(before[n], w) for n, w in graph.weights().items())
    graph_losses = graph.losses_to_floats([graph.train_step(b) for b in batches])
    xla_losses = xla.losses_to_floats([xla.train_step(b) for b in batches])
    np.testing.assert_allclose(xla_losses, graph_losses, rtol=1e-5)
    assert graph_losses[-1] < graph_losses[0]


def test_run_cell_records_what_ran(write_suite):
    result = run_cell(_cells(write_suite, "lstm")[("tf", 1, True)], TFBackend())
    assert result["timing"]["steps_measured"] == 3
    assert result["metrics"]["tokens_per_s"] > 0
    assert (
        result["memory"]["tf_gpu_peak_bytes"] is None
        and "CPU" in result["memory"]["framework_memory_reason"]
    )
    assert (
        result["backend_info"]["device"] == "/CPU:0"
        and result["backend_info"]["jit_compile"] is True
    )


def test_parity_command_names_a_perturbed_parameter(tmp_path):
    env = {**os.environ, parity.PERTURB_ENV: "tf:h.1.mlp.c_fc.w", "OMP_NUM_THREADS": "1"}
    proc = run_cli(
        "parity",
        "--model",
        "gpt",
        "--steps",
        "2",
        "--results-dir",
        str(tmp_path),
        cwd=REPO,
        env=env,
    )
    assert proc.returncode == 1, proc.stderr
    assert "tf loaded h.1.mlp.c_fc.w differently" in proc.stderr
    (records_file,) = (tmp_path / "parity-gpt-tiny").glob("parity-*.jsonl")
    (record,) = [json.loads(line) for line in records_file.read_text().splitlines()]
    assert record["kind"] == "parity" and record["passed"] is False
    assert record["backends"] == ["torch", "tf"]
    assert {c["name"]: c["passed"] for c in record["checks"]}["initial_weights"] is False


def test_smoke_suite_runs_both_backends(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc = run_cli(
        "run",
        "suites/smoke.yaml",
        "--quiet",
        "--results-dir",
        str(tmp_path),
        cwd=REPO,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    records = [
        json.loads(line) for f in tmp_path.rglob("*.jsonl") for line in f.read_text().splitlines()
    ]
    ok = {r["cell"]["backend"] for r in records if r["status"] == "ok"}
    assert ok == {"torch", "tf"}
    tf_record = next(r for r in records if r["cell"]["backend"] == "tf" and r["status"] == "ok")
    assert tf_record["env"]["framework"]["tensorflow_version"] == tf.__version__
