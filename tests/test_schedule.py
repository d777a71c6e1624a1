"""The learning-rate schedule: warmup + cosine, the same in PyTorch and TensorFlow."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hlbench.errors import UsageError
from hlbench.suite import load_suite
from hlbench.techniques import schedule
from tests.helpers import build_trainer, suite_yaml

COSINE = {
    "lr": 0.01,
    "lr_schedule": "cosine",
    "lr_warmup_steps": 4,
    "lr_decay_steps": 16,
    "lr_min_ratio": 0.1,
}
MEASUREMENT = {"warmup_steps": 2, "steps": 5, "windows": 3, "eval_batches": 1}


def _cells(write_suite, optimizer, backends=("torch",), measurement=MEASUREMENT, **sections):
    text = suite_yaml(
        backends=list(backends), optimizer=optimizer, measurement=measurement, **sections
    )
    return load_suite(write_suite(text)).cells


def test_the_rate_warms_up_linearly_then_follows_the_cosine_to_its_floor(write_suite):
    opt = _cells(write_suite, COSINE)[0].optimizer
    rates = [schedule.lr_at(opt, s) for s in range(1, 25)]
    assert rates[:4] == pytest.approx([0.0025, 0.005, 0.0075, 0.01])  # lr · s / W, then lr at W
    assert rates[9] == pytest.approx(0.01 * (0.1 + 0.9 * 0.5))  # halfway: s = 10 of 4..16
    assert rates[15:] == pytest.approx([0.001] * 9)  # lr · α from step D on
    assert all(a > b for a, b in zip(rates[3:16], rates[4:16]))  # strictly falling in between


def test_a_constant_rate_keeps_the_cell_dict_and_hash(write_suite):
    plain = _cells(write_suite, {"lr": 0.01})[0]
    keys = ["name", "lr", "betas", "eps", "weight_decay", "grad_clip_norm"]
    assert list(plain.to_dict()["optimizer"]) == keys  # the dict records had before schedules
    assert plain.optimizer.lr_schedule == "constant"
    cosine = _cells(write_suite, COSINE)[0]
    assert cosine.to_dict()["optimizer"]["lr_decay_steps"] == 16
    assert cosine.hash != plain.hash


def test_the_decay_defaults_to_the_cells_step_budget(write_suite):
    opt = {k: v for k, v in COSINE.items() if k != "lr_decay_steps"}
    fixed = _cells(write_suite, opt)[0]
    assert fixed.optimizer.lr_decay_steps == 2 + 3 * 5  # warmup + windows × steps
    ttt = {"warmup_steps": 2, "eval_batches": 1, "mode": "time_to_target"}
    ttt |= {"target_excess_nats": 0.1, "eval_every_steps": 10, "max_steps": 35}
    cell = _cells(write_suite, opt, measurement=ttt)[0]
    assert cell.optimizer.lr_decay_steps == 42  # 2 + whole eval intervals covering the budget


@pytest.mark.parametrize(
    ("optimizer", "message"),
    [
        ({"lr_warmup_steps": 5}, "lr_warmup_steps: applies to lr_schedule: cosine only"),
        ({"lr_min_ratio": 0.1}, "lr_min_ratio: applies to lr_schedule: cosine only"),
        ({**COSINE, "lr_decay_steps": 4}, "lr_decay_steps 4 must exceed lr_warmup_steps 4"),
        ({"lr_schedule": "linear"}, "lr_schedule"),
        ({**COSINE, "lr_min_ratio": 1.5}, "lr_min_ratio"),
    ],
)
def test_bad_schedules_are_one_line_errors(write_suite, optimizer, message):
    with pytest.raises(UsageError, match=message) as info:
        _cells(write_suite, optimizer)
    assert "\n" not in str(info.value)


def test_a_warmup_as_long_as_the_budget_is_refused(write_suite):
    opt = {"lr_schedule": "cosine", "lr_warmup_steps": 17}
    with pytest.raises(UsageError, match="lr_warmup_steps 17 is not below the cell's 17"):
        _cells(write_suite, opt)


def _rates_and_losses(cell, steps: int, trainers: list | None = None) -> tuple[list, list]:
    """The rate each optimizer step ran with, as the trainer holds it, and the step losses."""
    from hlbench.worker.inputs import corpus_for, train_batches

    if cell.backend == "torch":
        from hlbench.backends.torch.backend import TorchBackend as Backend
    else:
        from hlbench.backends.tf.backend import TFBackend as Backend
    trainer = build_trainer(Backend(), cell)
    if trainers is not None:
        trainers.append(trainer)
    rates, losses = [], []
    for batch in train_batches(cell, corpus_for(cell), steps):
        if cell.backend == "torch":
            rates.append(trainer.optimizer.param_groups[0]["lr"])
        losses.append(float(trainer.train_step(batch)))
        if cell.backend == "tf":
            opt = trainer.optimizer
            rates.append(float(opt.learning_rate(opt.iterations)))  # the step just taken
    return rates, losses


def test_torch_and_tf_run_the_same_schedule(write_suite):
    pytest.importorskip("tensorflow")
    cells = {c.backend: c for c in _cells(write_suite, COSINE, backends=("torch", "tf"))}
    reference = [schedule.lr_at(cells["torch"].optimizer, s) for s in range(1, 21)]
    torch_rates, torch_losses = _rates_and_losses(cells["torch"], 20)
    tf_rates, tf_losses = _rates_and_losses(cells["tf"], 20)
    np.testing.assert_allclose(torch_rates, reference, rtol=1e-6)
    np.testing.assert_allclose(tf_rates, reference, rtol=1e-6)
    # the schedule reaches the updates: both frameworks train alike, and unlike a constant rate
    np.testing.assert_allclose(tf_losses, torch_losses, rtol=1e-4)
    constant = dataclasses.replace(
        cells["torch"], optimizer=_cells(write_suite, {"lr": 0.01})[0].optimizer
    )
    _, constant_losses = _rates_and_losses(constant, 20)
    assert abs(constant_losses[-1] - torch_losses[-1]) > 1e-3


@pytest.mark.parametrize("backend", ["torch", "tf"])
def test_a_skipped_fp16_step_still_advances_the_schedule(write_suite, monkeypatch, backend):
    if backend == "tf":
        pytest.importorskip("tensorflow")
    monkeypatch.setenv("HLBENCH_TEST_NONFINITE_STEP", "1")
    cell = _cells(write_suite, COSINE, backends=(backend,), axes={"precision": ["fp16"]})[0]
    trainers: list = []
    rates, _ = _rates_and_losses(cell, 4, trainers)
    trainer = trainers[0]
    skipped = trainer._overflow_steps if backend == "torch" else trainer.loss_scale.overflow_steps
    assert int(skipped) == 1
    expected = [schedule.lr_at(cell.optimizer, s) for s in range(1, 5)]
    np.testing.assert_allclose(rates, expected, rtol=1e-6)
