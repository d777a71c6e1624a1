"""Time to target, seeds as repeats and the training-health figures."""

from __future__ import annotations

import json
import math
import re
import time

import numpy as np
import pytest

from hlbench.errors import UsageError
from hlbench.suite import load_suite
from hlbench.worker import health
from tests.helpers import build_trainer, run_cli, suite_yaml

# a tiny model on a small chain learns fast: from ln(256) ≈ 5.5 to ~1 nat of excess in ~6 steps
WORKLOAD = {
    "model": "gpt",
    "size": "tiny",
    "seq_len": 16,
    "batch_size": 8,
    "data": {"kind": "markov", "vocab": 16, "branching": 2},
}
OPTIMIZER = {"lr": 0.01}


def _ttt(**keys: object) -> dict[str, object]:
    return {
        "warmup_steps": 1,
        "eval_batches": 2,
        "mode": "time_to_target",
        "eval_every_steps": 2,
        "max_steps": 100,
        **keys,
    }


def _cell(
    write_suite, measurement, optimizer=OPTIMIZER, workload=WORKLOAD, backend="torch", axes=None
):
    text = suite_yaml(
        backends=[backend],
        workloads=[workload],
        measurement=measurement,
        optimizer=optimizer,
        axes=axes,
    )
    return load_suite(write_suite(text)).cells[0]


def _run(cell):
    """The worker's measured fields (run_cell; `execute` adds the status and, once per session, a
    CPU peak calibration for MFU, which these tests do not need)."""
    from hlbench.backends import get_spec, load_adapter
    from hlbench.worker.train import run_cell

    return run_cell(cell, load_adapter(get_spec(cell.backend)))


# --------------------------------------------------------------------------------------------------
# Suite keys


@pytest.mark.parametrize(
    ("measurement", "message"),
    [
        ({"target_excess_nats": 0.1}, "applies to mode: time_to_target only"),
        (_ttt(), "exactly one of target_excess_nats, target_eval_loss"),
        (_ttt(target_excess_nats=0.1, target_eval_loss=1.0), "exactly one of"),
        (_ttt(target_excess_nats=0.1, eval_every_steps=None), "needs eval_every_steps"),
        (_ttt(target_excess_nats=0.1, max_steps=None), "max_steps or max_tokens"),
        (_ttt(target_excess_nats=0.1, eval_batches=0), "eval_batches > 0"),
        ({"seeds": [1, 1]}, "a seed is listed twice"),
        ({"seeds": [1, 2], "repeats": 3}, "each seed is one repeat"),
        (_ttt(target_excess_nats=0.1, max_steps=10_000_000), "lower max_steps"),
    ],
)
def test_bad_quality_keys_are_one_line_errors(write_suite, measurement, message):
    measurement = {k: v for k, v in measurement.items() if v is not None}
    with pytest.raises(UsageError, match=message):
        _cell(write_suite, measurement)


def test_byte_corpus_takes_an_eval_loss_target_not_an_excess(write_suite, tmp_path):
    text = tmp_path / "text.txt"
    text.write_bytes(bytes(range(256)) * 8)
    workload = {**WORKLOAD, "data": {"kind": "bytes", "path": str(text)}}
    with pytest.raises(UsageError, match="give target_eval_loss instead; a byte corpus"):
        _cell(write_suite, _ttt(target_excess_nats=0.1), workload=workload)
    cell = _cell(write_suite, _ttt(target_eval_loss=4.0), workload=workload)
    assert cell.measurement.target_eval_loss == 4.0
    suite = write_suite(
        suite_yaml(workloads=[workload], measurement=_ttt(target_excess_nats=0.1)), "bad.yaml"
    )
    proc = run_cli("run", str(suite), "--dry-run", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "give target_eval_loss" in proc.stderr


def test_fixed_steps_cells_keep_their_dict_and_seeds_are_repeats(write_suite):
    fixed = _cell(write_suite, {"warmup_steps": 1, "steps": 2, "windows": 2})
    old_keys = {"warmup_steps", "steps", "windows", "repeats", "budget_s", "timeout_s"}
    assert set(fixed.measurement.to_dict()) == old_keys | {"eval_batches"}
    assert "init_seed" not in fixed.to_dict() and fixed.for_repeat(3) is fixed
    seeded = _cell(write_suite, {"warmup_steps": 1, "steps": 2, "windows": 2, "seeds": [4, 7]})
    assert seeded.measurement.repeats == 2
    repeats = [seeded.for_repeat(r) for r in range(2)]
    assert [c.train_seed for c in repeats] == [4, 7]
    assert {c.hash for c in repeats} == {seeded.hash} and seeded.hash != fixed.hash
    assert all(c.seed == 0 for c in repeats)  # the corpus and held-out batches keep the suite's


# --------------------------------------------------------------------------------------------------
# Time to target


def test_a_tiny_cell_reaches_a_loose_target_and_eval_time_stays_out(write_suite, monkeypatch):
    from hlbench.backends.torch.trainer import TorchTrainer

    pause_s = 0.05
    original = TorchTrainer.eval_loss

    def slow_eval(self, batches):  # an eval that takes visibly long: none of it may be training
        time.sleep(pause_s)
        return original(self, batches)

    monkeypatch.setattr(TorchTrainer, "eval_loss", slow_eval)
    cell = _cell(write_suite, _ttt(target_excess_nats=2.5))
    t0 = time.perf_counter()
    result = _run(cell)
    wall_s = time.perf_counter() - t0
    q, timing = result["quality"], result["timing"]
    curve = q["eval_curve"]
    assert q["reached"] and q["stopped_by"] == "target"
    at = curve["step"].index(q["steps_to_target"])
    assert at == len(curve["step"]) - 1  # it stops at the first eval that meets the target
    assert curve["excess_nats"][at] <= 2.5 < min(curve["excess_nats"][:at] + [math.inf])
    tokens_per_step = cell.workload.global_batch * cell.workload.seq_len
    assert q["tokens_to_target"] == q["steps_to_target"] * tokens_per_step
    assert q["steps_to_target"] == 1 + 2 * q["windows_to_target"]  # warmup, then intervals
    # training time: the synced warmup steps and windows, nothing else
    train_s = sum(timing["warmup_step_times_s"]) + sum(timing["window_wall_s"])
    assert q["time_to_target_s"] == pytest.approx(train_s)
    assert q["time_to_target_s"] == curve["train_time_s"][at]
    assert curve["train_time_s"] == sorted(curve["train_time_s"])
    assert all(s >= pause_s for s in curve["eval_s"])
    assert q["eval_s_total"] == pytest.approx(sum(curve["eval_s"]))
    assert q["time_to_target_s"] + q["eval_s_total"] < wall_s
    assert q["best_excess_nats"] == min(curve["excess_nats"])
    assert result["loss"]["eval_loss"] == curve["eval_loss"][-1]  # no extra eval
    floor = result["loss"]["entropy_floor_nats"]
    assert curve["excess_nats"][at] == pytest.approx(curve["eval_loss"][at] - floor)


def test_an_unreachable_target_is_ok_with_its_best_excess(write_suite):
    from hlbench.worker.main import execute

    result = execute(_cell(write_suite, _ttt(target_excess_nats=1e-6, max_steps=5)))
    assert result["status"] == "ok", result.get("reason")
    q = result["quality"]
    assert not q["reached"] and q["stopped_by"] == "step budget"
    assert q["time_to_target_s"] is None and q["steps_to_target"] is None
    assert q["eval_curve"]["step"] == [3, 5]  # warmup 1, then two intervals of 2
    assert q["best_excess_nats"] == min(q["eval_curve"]["excess_nats"]) > 0
    assert q["train_time_s"] > 0 and q["budget"]["planned_steps"] == 5


def test_without_stop_at_target_training_runs_to_the_budget(write_suite):
    result = _run(
        _cell(write_suite, _ttt(target_excess_nats=2.5, max_steps=21, stop_at_target=False))
    )
    q = result["quality"]
    curve = q["eval_curve"]
    assert q["reached"] and q["stopped_by"] == "step budget"
    assert curve["step"][-1] == q["steps"] == 21  # every interval of the budget
    at = curve["step"].index(q["steps_to_target"])
    assert curve["excess_nats"][at] <= 2.5 < min(curve["excess_nats"][:at] + [math.inf])
    assert at < len(curve["step"]) - 1  # met early, trained on
    assert q["time_to_target_s"] == curve["train_time_s"][at] < q["train_time_s"]
    assert q["final_excess_nats"] == curve["excess_nats"][-1]
    assert q["windows_to_target"] == at + 1


def test_stop_at_target_is_a_time_to_target_key_and_its_default_keeps_the_dict(write_suite):
    with pytest.raises(UsageError, match="stop_at_target: applies to mode: time_to_target only"):
        _cell(write_suite, {"stop_at_target": False})
    default = _cell(write_suite, _ttt(target_excess_nats=0.5)).measurement.to_dict()
    explicit = _cell(write_suite, _ttt(target_excess_nats=0.5, stop_at_target=True))
    assert "stop_at_target" not in default and explicit.measurement.to_dict() == default
    off = _cell(write_suite, _ttt(target_excess_nats=0.5, stop_at_target=False))
    assert off.measurement.to_dict()["stop_at_target"] is False


def test_the_time_budget_stops_training(write_suite):
    result = _run(_cell(write_suite, _ttt(target_excess_nats=1e-6, max_time_s=0.001)))
    q = result["quality"]
    assert not q["reached"] and q["stopped_by"] == "max_time_s"
    assert len(q["eval_curve"]["step"]) == 1


def test_an_absolute_target_on_a_byte_corpus(write_suite, tmp_path):
    text = tmp_path / "text.txt"
    text.write_bytes(b"abcd" * 600)
    workload = {**WORKLOAD, "data": {"kind": "bytes", "path": str(text)}}
    result = _run(_cell(write_suite, _ttt(target_eval_loss=4.5), workload=workload))
    q = result["quality"]
    assert q["reached"] and q["entropy_floor_nats"] is None
    assert q["eval_curve"]["excess_nats"] == [None] * len(q["eval_curve"]["step"])
    assert q["eval_curve"]["eval_loss"][-1] <= 4.5


def test_energy_to_target_sums_the_windows_up_to_the_target():
    from hlbench.records import quality as q
    from hlbench.telemetry.collect import to_target_energy

    # one GPU drawing 100 W, sampled every 0.5 s; three 2-second intervals, the target after two
    rows = [{"t_monotonic_s": t / 2, "gpu_index": 0, "gpu_energy_j": 50.0 * t} for t in range(20)]
    windows = [[0.0, 2.0], [3.0, 5.0], [6.0, 8.0]]
    section = to_target_energy(rows, windows, {"quality": {"windows_to_target": 2}})
    assert section["gpu_energy_j"] == pytest.approx(400.0)
    assert q.energy_to_target_j({"telemetry": {"to_target": section}}) == pytest.approx(400.0)
    assert to_target_energy(rows, windows, {"quality": {"windows_to_target": None}}) is None
    short = to_target_energy(rows, [[0.0, 0.5]], {"quality": {"windows_to_target": 1}})
    assert short["gpu_energy_j"] is None and "shorter than" in short["reasons"]["gpu_energy_j"]


# --------------------------------------------------------------------------------------------------
# Training health


def test_loss_spikes_follow_the_rule():
    rng = np.random.default_rng(0)
    losses = list(5.0 - 0.02 * np.arange(80) + rng.normal(0, 0.01, 80))
    assert health.loss_spikes(losses) == []
    losses[50] += 0.5
    assert health.loss_spikes(losses) == [50]
    assert health.loss_spikes([2.0] * 60) == []  # flat: MAD 0 is not a license for spikes
    assert health.loss_spikes([2.0] * 30 + [2.1]) == [30]


def test_fixed_steps_records_carry_health_and_a_tiny_clip_clips_every_step(write_suite):
    measurement = {"warmup_steps": 1, "steps": 2, "windows": 2, "eval_batches": 1}
    result = _run(_cell(write_suite, measurement, {"lr": 0.01, "grad_clip_norm": 1e-6}))
    h = result["health"]
    assert "quality" not in result
    assert len(h["grad_norm_per_step"]) == len(result["loss"]["train_loss_per_step"]) == 5
    assert h["clipped_per_step"] == [True] * 5 and h["clipped_fraction"] == 1.0
    assert h["nonfinite_grad_steps"] == [] and h["nonfinite_loss_steps"] == []
    unclipped = _run(_cell(write_suite, measurement, {"lr": 0.01, "grad_clip_norm": None}))
    assert unclipped["health"]["clipped_steps"] == 0
    assert all(v > 0 for v in unclipped["health"]["grad_norm_per_step"])


def test_an_fp16_overflow_step_is_a_nonfinite_step_and_counted(write_suite, monkeypatch):
    from hlbench.techniques import test_hooks

    monkeypatch.setenv(test_hooks.NONFINITE_STEP_ENV, "2")
    measurement = {"warmup_steps": 1, "steps": 2, "windows": 2, "eval_batches": 1}
    h = _run(_cell(write_suite, measurement, axes={"precision": ["fp16"]}))["health"]
    # the injected step, and any the initial scale of 2**16 overflowed itself: the scaler's count
    assert 2 in h["nonfinite_grad_steps"]
    assert len(h["nonfinite_grad_steps"]) == h["overflow_skipped_steps"]
    assert h["grad_norm_per_step"][2] is None and h["clipped_per_step"][2] is False
    assert h["nonfinite_loss_steps"] == []  # the loss was finite; its gradient was not


def _first_step_norm(write_suite, backend):
    """(the backend's recorded norm of step 0, the norm computed from PyTorch's gradient)."""
    from hlbench.backends import get_spec, load_adapter
    from hlbench.worker.inputs import corpus_for, train_batches

    cell = _cell(write_suite, {"warmup_steps": 1, "steps": 1, "windows": 1}, backend=backend)
    batch = train_batches(cell, corpus_for(cell), 1)[0]
    reference = build_trainer(load_adapter(get_spec("torch")), _torch_twin(cell))
    _, grads = reference.gradients(batch)  # the unclipped gradient, model untouched
    direct = math.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in grads.values()))
    trainer = build_trainer(load_adapter(get_spec(backend)), cell)
    trainer.train_step(batch)
    (norm,) = trainer.grad_norms_to_floats()
    return norm, direct


def _torch_twin(cell):
    import dataclasses

    return dataclasses.replace(cell, backend="torch")


def test_the_grad_norm_is_the_norm_of_the_gradient(write_suite):
    norm, direct = _first_step_norm(write_suite, "torch")
    assert norm == pytest.approx(direct, rel=1e-6)


def test_the_tf_grad_norm_matches_torch(write_suite):
    pytest.importorskip("tensorflow")
    norm, direct = _first_step_norm(write_suite, "tf")  # the same weights and batch (parity)
    assert norm == pytest.approx(direct, rel=1e-4)


# --------------------------------------------------------------------------------------------------
# Seeds as repeats, through the planner, the records and the report


def test_seeds_are_repeats_and_the_report_gives_median_interval_and_share(
    write_suite, tmp_path, capsys
):
    from hlbench.cli import main
    from hlbench.records import append_record
    from hlbench.reporting import write_report
    from hlbench.sweep.outcome import base_record
    from hlbench.sweep.plan import plan

    measurement = _ttt(target_excess_nats=2.5, seeds=[0, 1, 2])
    suite = load_suite(
        write_suite(suite_yaml(workloads=[WORKLOAD], measurement=measurement, optimizer=OPTIMIZER))
    )
    records_path = tmp_path / "run.jsonl"
    for task in plan(suite, set()):  # the records a run writes, its workers run in this process
        record = base_record(suite, task, "run-1")
        append_record(records_path, {**record, **_run(task.cell), "status": "ok"})
    records = [json.loads(line) for line in records_path.read_text().splitlines()]
    assert [r["repeat"] for r in records] == [0, 1, 2]
    assert [r["cell"]["init_seed"] for r in records] == [0, 1, 2]
    assert len({r["cell_hash"] for r in records}) == 1
    assert len({r["loss"]["entropy_floor_nats"] for r in records}) == 1  # the same corpus
    assert len({r["loss"]["train_loss_per_step"][0] for r in records}) == 3  # other weights
    out = write_report([records_path], tmp_path / "report.md")
    text = out.read_text()
    section = text[text.index("## Time to target") :]
    row = next(line for line in section.splitlines() if line.startswith("| gpt-tiny"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:3] == ["excess ≤ 2.5 nats", "3/3"]
    for figure in cells[3:6]:  # time, tokens and final excess: median [interval]
        assert re.fullmatch(r"\S+( s)? \[\S+( s)?–\S+( s)?\]", figure), figure
    assert "## Training health" in text
    # compare sees the seeds as the runs of one cell
    capsys.readouterr()
    args = ["compare", str(records_path), str(records_path), "--metric", "tokens_to_target"]
    main([*args, "--metric", "time_to_target_s", "--format", "json"])
    results = {r["metric"]: r for r in json.loads(capsys.readouterr().out)["results"]}
    assert results["tokens_to_target"]["n_baseline"] == 3
    assert results["time_to_target_s"]["n_candidate"] == 3
