"""The PyTorch backend: exact weights, accumulation done right, and training that reaches the
floor."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hlbench.backends.torch.backend import TorchBackend  # noqa: E402
from hlbench.backends.torch.models import parameter_map  # noqa: E402
from hlbench.backends.torch.trainer import TorchTrainer  # noqa: E402
from hlbench.data import IGNORE_INDEX  # noqa: E402
from hlbench.suite import load_suite  # noqa: E402
from hlbench.worker.inputs import corpus_for, train_batches  # noqa: E402
from hlbench.worker.train import run_cell  # noqa: E402
from hlbench.workloads import model_spec  # noqa: E402
from tests.helpers import build_trainer  # noqa: E402

SUITE = """\
backends: [torch]
device: cpu
workloads:
  - {model: MODEL, size: tiny, seq_len: 32, batch_size: 8, variable_length: VARLEN}
axes:
  accumulation: [1, 4]
optimizer: {grad_clip_norm: null}
"""


def _cells(write_suite, model: str = "gpt", variable_length: bool = False):
    text = SUITE.replace("MODEL", model).replace("VARLEN", str(variable_length).lower())
    return {c.axes["accumulation"]: c for c in load_suite(write_suite(text)).cells}


def _trainer(cell) -> TorchTrainer:
    return build_trainer(TorchBackend(), cell)


def _grads(trainer: TorchTrainer) -> dict[str, np.ndarray]:
    return {
        n: p.grad.detach().numpy().copy()
        for n, p in trainer.model.named_parameters()
        if p.grad is not None
    }


@pytest.mark.parametrize("model", ["gpt", "lstm"])
def test_loads_exactly_the_neutral_weights(write_suite, model):
    cell = _cells(write_suite, model)[1]
    spec = model_spec(cell)
    weights = spec.init_weights(cell.seed)
    trainer = _trainer(cell)
    for name, (param, transposed) in parameter_map(trainer.model, spec).items():
        expected = weights[name].T if transposed else weights[name]
        np.testing.assert_array_equal(param.detach().numpy(), expected, err_msg=name)


def _max_relative_diff(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    assert a.keys() == b.keys()
    return max(float(np.linalg.norm(a[n] - b[n]) / np.linalg.norm(b[n])) for n in a)


@pytest.mark.parametrize("model", ["gpt", "lstm"])
@pytest.mark.parametrize("variable_length", [False, True])
def test_accumulated_gradient_equals_full_batch_gradient(write_suite, model, variable_length):
    cells = _cells(write_suite, model, variable_length)
    batch = train_batches(cells[1], corpus_for(cells[1]), 1)[0]
    if variable_length:  # the micro-batches really do hold different numbers of target tokens
        counts = {int((micro.targets != IGNORE_INDEX).sum()) for micro in batch.split(4)}
        assert len(counts) > 1
    full, accumulated = _trainer(cells[1]), _trainer(cells[4])
    loss_full = full.accumulate_gradients(batch)
    loss_acc = accumulated.accumulate_gradients(batch)
    assert float(loss_acc) == pytest.approx(float(loss_full), rel=1e-6)
    assert _max_relative_diff(_grads(accumulated), _grads(full)) <= 1e-6


def test_mean_of_micro_means_would_fail_the_equivalence(write_suite):
    """The control: the normalization bug the equivalence test exists to catch is detectable."""
    cells = _cells(write_suite, "gpt", variable_length=True)
    batch = train_batches(cells[1], corpus_for(cells[1]), 1)[0]
    full = _trainer(cells[1])
    full.accumulate_gradients(batch)
    wrong = _trainer(cells[4])
    for micro in batch.split(4):
        logits = wrong.model(torch.from_numpy(micro.inputs))
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, wrong.vocab_size),
            torch.from_numpy(micro.targets).reshape(-1),
            ignore_index=IGNORE_INDEX,
        )
        (loss / 4).backward()  # mean of per-micro-batch means
    assert _max_relative_diff(_grads(wrong), _grads(full)) > 1e-3


def test_fp32_is_exact_and_optimizer_groups(write_suite):
    trainer = _trainer(_cells(write_suite)[1])
    info = trainer.info()
    assert info["tf32_matmul"] is False and info["tf32_cudnn"] is False
    assert info["float32_matmul_precision"] == "highest" and info["param_dtype"] == "float32"
    decay, no_decay = trainer.optimizer.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"])
    assert all(p.ndim == 1 for p in no_decay["params"])


def test_lstm_hidden_bias_stays_zero(write_suite):
    cell = _cells(write_suite, "lstm")[1]
    trainer = _trainer(cell)
    batches = train_batches(cell, corpus_for(cell), 3)
    for batch in batches:
        trainer.train_step(batch)
    assert not trainer.model.lstm.bias_hh_l0.any()
    assert trainer.model.lstm.bias_ih_l0.grad is None  # zero_grad(set_to_none) after the step


def test_absent_cuda_device_is_skipped(write_suite):
    from hlbench.errors import SkipCell

    cell = _cells(write_suite)[1]
    cell = type(cell)(**{**cell.to_dict(), "device": "cuda:7"})
    if torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    with pytest.raises(SkipCell, match="cuda:7"):
        _trainer(cell)


@pytest.mark.parametrize("model", ["gpt", "lstm"])
def test_training_approaches_the_entropy_floor(write_suite, model):
    """On a small Markov chain the model must get close to the floor no model can beat."""
    suite = write_suite(f"""\
        backends: [torch]
        device: cpu
        workloads:
          - model: {model}
            size: tiny
            seq_len: 32
            batch_size: 16
            data: {{kind: markov, vocab: 16, branching: 3}}
        measurement: {{warmup_steps: 1, steps: 100, windows: 5, eval_batches: 8}}
        optimizer: {{lr: 1e-2, weight_decay: 0.0}}
        """)
    (cell,) = load_suite(suite).cells
    result = run_cell(cell, TorchBackend())
    loss = result["loss"]
    floor = loss["entropy_floor_nats"]
    start = loss["train_loss_per_step"][0]
    assert start > floor + 2.0  # starts near log(256), far above the floor
    excess = loss["excess_eval_loss_nats"]
    assert excess < 0.1, excess  # from ~3.8 nats at the start
    assert excess > -0.02  # nothing beats the floor (beyond sampling noise)
