"""Data-parallel TensorFlow (tf.distribute): the same training as on one device, to fp32 rounding.

Logical CPU devices must be configured before TensorFlow's runtime initialises, and a multi-worker
strategy owns its process, so every training run here is a fresh interpreter (`_CHILD`) that runs
`backend.prepare(cell)` then `hlbench.worker.train.run_cell(cell, backend)` and returns JSON (+ an
.npz of the final weights). The single-device reference runs the same way without `launch`.

Measured on the 2-core CPU machine (gpt tiny, 6 steps): per-step losses within 1.7e-7 relative of
single-device, final weights within 1.3e-6 absolute, eval loss within 2.4e-7; the tolerances below
are ~10× looser. The mirrored copies of every variable are bitwise equal (identical reduced
gradients, identical update ops).
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from hlbench.backends.tf.backend import TFBackend  # noqa: E402
from hlbench.cell import Cell  # noqa: E402
from hlbench.errors import SkipCell  # noqa: E402
from hlbench.suite import load_suite  # noqa: E402
from tests.helpers import REPO, build_trainer  # noqa: E402

LOSS_RTOL = 2e-6  # measured ≤ 1.7e-7
WEIGHT_ATOL = 1e-5  # measured ≤ 1.3e-6
CHILD_TIMEOUT_S = 120

SUITE = """\
backends: [tf]
device: cpu
workloads:
  - {model: gpt, size: tiny, seq_len: 32, batch_size: 8, variable_length: VARLEN}
axes:
  accumulation: [ACC]
  compile: [COMPILE]
  precision: [PRECISION]
measurement: {warmup_steps: 1, steps: 5, windows: 1, eval_batches: 1}
"""

# One cell in a fresh interpreter: argv = cell JSON path, output JSON path (weights: output +
# ".npz").
_CHILD = """
import json, sys
import numpy as np
from hlbench.backends.tf.backend import TFBackend
from hlbench.cell import Cell
from hlbench.worker.train import run_cell

cell = Cell.from_dict(json.loads(open(sys.argv[1]).read()))
backend = TFBackend()
backend.prepare(cell)
trainers = []
build = backend.build
# keep the trainer for its weights
backend.build = lambda *args: trainers.append(build(*args)) or trainers[-1]
result = run_cell(cell, backend)
trainer = trainers[0]
np.savez(sys.argv[2] + ".npz", **trainer.weights())
copies = [list(trainer.strategy.experimental_local_results(v)) if hasattr(trainer, "strategy")
          else [v] for v in trainer.params + trainer.optimizer.m + trainer.optimizer.v]
out = {"losses": result["loss"]["train_loss_per_step"], "eval_loss": result["loss"]["eval_loss"],
       "info": {k: v for k, v in result["backend_info"].items() if k != "pruning"},
       "rank": trainer.rank, "world_size": trainer.world_size,
       "gathered": trainer.all_gather_objects(
           {"rank": trainer.rank, "pid_tag": f"task-{trainer.rank}"}),
       "copies_max_diff": max(float(np.abs(c.numpy() - cs[0].numpy()).max())
                              for cs in copies for c in cs)}
backend.shutdown()
open(sys.argv[2], "w").write(json.dumps(out))
"""


def _cell(
    write_suite,
    accumulation: int = 1,
    variable_length: bool = False,
    compile_: bool = False,
    level: str = "fp32",
    launch: dict[str, Any] | None = None,
) -> Cell:
    text = (
        SUITE.replace("VARLEN", str(variable_length).lower())
        .replace("ACC", str(accumulation))
        .replace("COMPILE", str(compile_).lower())
        .replace("PRECISION", level)
    )
    (cell,) = load_suite(write_suite(text)).cells
    return dataclasses.replace(cell, launch=launch) if launch else cell


def _launch(strategy: str, world: int) -> dict[str, Any]:
    per_node = world if strategy == "mirrored" else 1
    return {
        "strategy": strategy,
        "world_size": world,
        "nnodes": world // per_node,
        "nproc_per_node": per_node,
    }


def _start(cell: Cell, out: Path, extra_env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    cell_path = out.with_suffix(".cell.json")
    cell_path.write_text(json.dumps(cell.to_dict()))
    env = {
        **os.environ,
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
        **(extra_env or {}),
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(cell_path), str(out)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(proc: subprocess.Popen[str], out: Path) -> dict[str, Any]:
    try:
        log, _ = proc.communicate(timeout=CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        log, _ = proc.communicate()
        pytest.fail(f"training subprocess timed out:\n{log[-4000:]}")
    assert proc.returncode == 0, log[-4000:]
    result = json.loads(out.read_text())
    result["weights"] = dict(np.load(str(out) + ".npz"))
    return result


def _run(cell: Cell, out: Path) -> dict[str, Any]:
    return _finish(_start(cell, out), out)


def _assert_same_training(reference: dict[str, Any], distributed: dict[str, Any]) -> None:
    assert len(distributed["losses"]) == 6
    np.testing.assert_allclose(distributed["losses"], reference["losses"], rtol=LOSS_RTOL)
    assert distributed["eval_loss"] == pytest.approx(reference["eval_loss"], rel=LOSS_RTOL)
    for name, w in reference["weights"].items():
        np.testing.assert_allclose(
            distributed["weights"][name], w, rtol=0, atol=WEIGHT_ATOL, err_msg=name
        )
    assert distributed["copies_max_diff"] == 0.0  # every replica holds the same weights and moments


@pytest.mark.parametrize(
    ("accumulation", "variable_length", "compile_"), [(1, False, False), (2, True, True)]
)  # (2, False, False) is covered by both
def test_mirrored_over_two_logical_cpus_trains_like_one_device(
    write_suite, tmp_path, accumulation, variable_length, compile_
):
    single = _cell(write_suite, accumulation, variable_length, compile_)
    mirrored = dataclasses.replace(single, launch=_launch("mirrored", 2))
    reference = _run(single, tmp_path / "single.json")
    result = _run(mirrored, tmp_path / "mirrored.json")
    _assert_same_training(reference, result)
    info = result["info"]
    assert info["strategy"] == "MirroredStrategy" and info["replicas"] == 2
    assert info["cross_device_ops"].startswith("ReductionToOneDevice")
    assert [d.rpartition("device:")[2] for d in info["replica_devices"]] == ["CPU:0", "CPU:1"]
    assert info["jit_compile"] is compile_
    assert (result["rank"], result["world_size"], result["gathered"]) == (
        0,
        2,
        [{"rank": 0, "pid_tag": "task-0"}],
    )


def test_mirrored_runs_the_learning_rate_schedule_like_one_device(write_suite, tmp_path):
    base = _cell(write_suite)
    cosine = dataclasses.replace(
        base.optimizer,  # the suite's lr: a larger one amplifies the frameworks' rounding apart
        lr_schedule="cosine",
        lr_warmup_steps=2,
        lr_decay_steps=6,
        lr_min_ratio=0.1,
    )
    single = dataclasses.replace(base, optimizer=cosine)
    reference = _run(single, tmp_path / "single.json")
    mirrored = dataclasses.replace(single, launch=_launch("mirrored", 2))
    _assert_same_training(reference, _run(mirrored, tmp_path / "mirrored.json"))
    constant = _run(
        dataclasses.replace(base, optimizer=dataclasses.replace(cosine, lr_schedule="constant")),
        tmp_path / "c.json",
    )
    assert constant["losses"][-1] != pytest.approx(reference["losses"][-1], rel=1e-4)


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_multi_worker_over_two_processes_trains_like_one_device(write_suite, tmp_path):
    single = _cell(write_suite, accumulation=2, variable_length=True)
    cell = dataclasses.replace(single, launch=_launch("multi_worker", 2))
    workers = [f"localhost:{p}" for p in _free_ports(2)]
    procs = [
        _start(
            cell,
            tmp_path / f"worker{i}.json",
            {
                "TF_CONFIG": json.dumps(
                    {"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}}
                )
            },
        )
        for i in range(2)
    ]
    results = [_finish(p, tmp_path / f"worker{i}.json") for i, p in enumerate(procs)]
    reference = _run(single, tmp_path / "single.json")
    expected_gather = [{"rank": 0, "pid_tag": "task-0"}, {"rank": 1, "pid_tag": "task-1"}]
    for rank, result in enumerate(results):
        _assert_same_training(reference, result)
        assert (result["rank"], result["world_size"], result["gathered"]) == (
            rank,
            2,
            expected_gather,
        )
        assert result["info"]["strategy"] == "MultiWorkerMirroredStrategy"
        assert (
            result["info"]["cross_device_ops"] == "collective RING"
            and result["info"]["local_replicas"] == 1
        )
    assert (
        results[0]["losses"] == results[1]["losses"]
    )  # one reduced loss, bitwise, in every worker


@pytest.mark.parametrize(
    ("level", "strategy", "reason"),
    [
        ("fp16", "mirrored", "dynamic loss scaling"),
        ("fp32", "ddp", "not a TensorFlow one"),
    ],
)
def test_unsupported_combinations_are_skipped_with_the_reason(write_suite, level, strategy, reason):
    cell = _cell(write_suite, level=level, launch=_launch(strategy, 2))
    backend = TFBackend()
    backend.prepare(cell)  # creates nothing for a cell build() will skip
    with pytest.raises(SkipCell, match=reason):
        build_trainer(backend, cell)


def test_multi_worker_without_a_matching_tf_config_is_a_clear_error(write_suite, monkeypatch):
    cell = _cell(write_suite, launch=_launch("multi_worker", 2))
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG is not set"):
        TFBackend().prepare(cell)
    monkeypatch.setenv(
        "TF_CONFIG",
        json.dumps(
            {
                "cluster": {"worker": ["localhost:1", "localhost:2", "localhost:3"]},
                "task": {"type": "worker", "index": 0},
            }
        ),
    )
    with pytest.raises(ValueError, match="lists 3 workers but cell.launch.world_size is 2"):
        TFBackend().prepare(cell)
