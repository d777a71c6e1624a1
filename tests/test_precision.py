"""The precision axis: each level runs what its label says in both backends, and the record proves
it.

Framework-free parts first (the level table, the dtype check, bf16 rounding, registry reasons), then
tiny workloads on the CPU in both backends: dtypes per level, fp16's skipped non-finite step and
reduced loss scale, tf32/fp8 skipped with a reason, a label/dtype contradiction recorded as `error`.
"""

from __future__ import annotations

import numpy as np
import pytest

from hlbench.backends import TF, TORCH
from hlbench.suite import load_suite
from hlbench.techniques import precision, test_hooks
from tests.helpers import build_trainer, suite_yaml

LEVELS = ["fp32", "bf16", "fp16", "bf16-pure"]

SUITE = suite_yaml(
    backends=["BACKEND"],
    device="cpu",
    workloads=[{"model": "MODEL", "size": "tiny", "seq_len": 32, "batch_size": 8}],
    axes={
        "precision": ["fp32", "tf32", "bf16", "fp16", "bf16-pure", "fp8"],
        "accumulation": ["ACC"],
    },
    optimizer={"lr": "1e-2"},
    measurement={"warmup_steps": 1, "steps": 2, "windows": 1, "eval_batches": 1},
)


# ---------------------------------------------------------------- framework-free


def test_check_observed_names_every_contradiction():
    precision.check_observed("bf16", precision.expected("bf16"))  # a correct run passes
    observed = {**precision.expected("bf16"), "matmul_output": "float32", "grad": "bfloat16"}
    with pytest.raises(precision.PrecisionViolation) as err:
        precision.check_observed("bf16", observed)
    assert "matmul_output: expected bfloat16, observed float32" in str(err.value)
    assert "grad: expected float32, observed bfloat16" in str(err.value)
    missing = {k: v for k, v in precision.expected("fp32").items() if k != "param"}
    with pytest.raises(
        precision.PrecisionViolation, match="param: expected float32, observed nothing"
    ):
        precision.check_observed("fp32", missing)
    # the LSTM's own output is checked against the compute dtype too
    with pytest.raises(precision.PrecisionViolation, match="recurrent_output"):
        precision.check_observed(
            "fp16", {**precision.expected("fp16"), "recurrent_output": "float32"}
        )


def test_levels_table_matches_the_issue():
    assert set(precision.LEVELS) == {"fp32", "tf32", "bf16", "fp16", "bf16-pure", "fp8"}
    mixed = [precision.LEVELS[n] for n in ("bf16", "fp16")]
    assert all(
        lv.param == lv.grad == lv.optimizer_state == "float32" for lv in mixed
    )  # fp32 master weights
    pure = precision.LEVELS["bf16-pure"]
    assert pure.param == pure.grad == pure.optimizer_state == pure.compute == "bfloat16"
    assert [n for n, lv in precision.LEVELS.items() if lv.loss_scaling] == ["fp16"]
    assert precision.LEVELS["tf32"].min_cuda_capability == (8, 0) and precision.LEVELS[
        "fp8"
    ].min_cuda_capability == (8, 9)


def test_bf16_rounding_is_round_to_nearest_even():
    one_ulp = 2.0**-7  # bf16 spacing at 1.0
    values = np.array(
        [1.0 + one_ulp / 2, 1.0 + 1.5 * one_ulp, 1.0 + one_ulp / 2 + 2**-20, -3.14159], np.float32
    )
    rounded = precision.round_to_storage(values, "bfloat16")
    np.testing.assert_array_equal(
        rounded[:3], [1.0, 1.0 + 2 * one_ulp, 1.0 + one_ulp]
    )  # tie → even, tie → even, up
    assert rounded[3] == np.float32(-3.140625)


def test_registry_gives_specific_reasons():
    assert TF.unsupported_reason({"precision": "fp8"}) == (
        "fp8 is not available in TensorFlow (float8 training exists only for PyTorch, through "
        "torchao)"
    )
    assert TF.unsupported_reason({"precision": "bf16-pure"}) is None
    assert TORCH.unsupported_reason({"precision": "fp8"}) is None  # the device decides, in build()
    assert TORCH.unsupported_reason({"pruning": "magnitude"}) is None
    assert "not implemented in the torch backend yet" in TORCH.unsupported_reason(
        {"pruning": "lottery"}
    )


# ---------------------------------------------------------------- both backends, tiny workloads


def _backend(name: str):
    if name == "torch":
        pytest.importorskip("torch")
        from hlbench.backends.torch.backend import TorchBackend

        return TorchBackend()
    pytest.importorskip("tensorflow")
    from hlbench.backends.tf.backend import TFBackend

    return TFBackend()


def _cell(write_suite, backend: str, level: str, model: str = "gpt", accumulation: int = 1):
    text = (
        SUITE.replace("BACKEND", backend).replace("MODEL", model).replace("ACC", str(accumulation))
    )
    return next(c for c in load_suite(write_suite(text)).cells if c.axes["precision"] == level)


def _trainer(cell):

    return build_trainer(_backend(cell.backend), cell)


def _batches(cell, n: int):
    from hlbench.worker.inputs import corpus_for, train_batches

    return train_batches(cell, corpus_for(cell), n)


@pytest.mark.parametrize("backend", ["torch", "tf"])
@pytest.mark.parametrize("model", ["gpt", "lstm"])
@pytest.mark.parametrize("level", LEVELS)
def test_level_trains_and_records_its_dtypes(write_suite, backend, model, level):
    cell = _cell(write_suite, backend, level, model, accumulation=2)
    trainer = _trainer(cell)
    batches = _batches(cell, 4)
    start = trainer.eval_loss(batches[:1])
    losses = trainer.losses_to_floats([trainer.train_step(b) for b in batches])
    assert (
        all(np.isfinite(losses)) and trainer.eval_loss(batches[:1]) < start
    )  # it trains (lr 1e-2)
    info = trainer.info()
    want = precision.expected(level)
    assert {k: info["dtypes"][k] for k in want} == want
    if model == "lstm":  # the recurrence itself ran in the compute dtype, not only the head
        assert info["dtypes"]["recurrent_output"] == precision.LEVELS[level].compute
    assert (info["loss_scale_final"] is not None) == (level == "fp16")
    if level == "fp16":
        assert (
            info["loss_scale_final"] == precision.LOSS_SCALE_INIT
            and info["overflow_skipped_steps"] == 0
        )
    # what bf16-pure keeps is half of what the fp32-master levels keep
    n_params = sum(int(np.prod(s)) for s in _spec_shapes(cell))
    bytes_per = 2 if level == "bf16-pure" else 4
    assert (
        info["param_bytes"] == n_params * bytes_per
        and info["optimizer_state_bytes"] == 2 * n_params * bytes_per
    )


def _spec_shapes(cell):
    from hlbench.workloads import model_spec

    return model_spec(cell).param_shapes().values()


@pytest.mark.parametrize("backend", ["torch", "tf"])
def test_fp16_skips_a_nonfinite_step_and_halves_the_scale(write_suite, monkeypatch, backend):
    monkeypatch.setenv(test_hooks.NONFINITE_STEP_ENV, "2")
    cell = _cell(write_suite, backend, "fp16")
    trainer = _trainer(cell)
    batches = _batches(cell, 6)
    start = trainer.eval_loss(batches[:1])
    losses = [trainer.train_step(b) for b in batches[:2]]
    before = trainer.weights()
    losses.append(trainer.train_step(batches[2]))  # its gradients are made non-finite
    after_skip = trainer.weights()
    for name, w in before.items():
        np.testing.assert_array_equal(
            after_skip[name], w, err_msg=f"{name} changed in a skipped step"
        )
    info = trainer.info()
    assert info["overflow_skipped_steps"] == 1
    assert (
        info["loss_scale_final"] == precision.LOSS_SCALE_INIT * precision.LOSS_SCALE_BACKOFF_FACTOR
    )
    losses += [trainer.train_step(b) for b in batches[3:]]  # training continues
    after = trainer.weights()
    assert any(not np.array_equal(after[n], w) for n, w in after_skip.items())
    assert all(np.isfinite(np.concatenate([w.ravel() for w in after.values()])))
    assert all(np.isfinite(trainer.losses_to_floats(losses)))
    assert trainer.eval_loss(batches[:1]) < start
    assert trainer.info()["overflow_skipped_steps"] == 1  # only the injected step overflowed


@pytest.mark.parametrize("backend", ["torch", "tf"])
@pytest.mark.parametrize("level", ["tf32", "fp8"])
def test_gpu_only_levels_are_skipped_with_a_reason_on_a_cpu(write_suite, backend, level):
    from hlbench.worker.main import execute

    result = execute(_cell(write_suite, backend, level))
    assert result["status"] == "skipped"
    if level == "tf32":
        assert result["reason"].startswith(
            "tf32 needs an NVIDIA Ampere or newer GPU (compute capability ≥ 8.0)"
        )
        assert result["reason"].endswith("this cell's device is cpu")
    elif backend == "torch":
        assert (
            "fp8 needs an NVIDIA Ada, Hopper or newer GPU (compute capability ≥ 8.9)"
            in result["reason"]
        )
    else:
        assert result["reason"].startswith("fp8 is not available in TensorFlow")


@pytest.mark.parametrize("backend", ["torch", "tf"])
@pytest.mark.parametrize("level", ["fp32", "bf16"])
def test_label_and_dtypes_that_disagree_make_the_cell_an_error(
    write_suite, monkeypatch, backend, level
):
    from hlbench.worker.main import execute

    cell = _cell(write_suite, backend, level)
    assert execute(cell)["status"] == "ok"  # the control: the same cell without the injection
    monkeypatch.setenv(test_hooks.PRECISION_MISMATCH_ENV, "1")
    result = execute(cell)
    assert result["status"] == "error", result.get("reason")
    assert result["error"]["type"] == "PrecisionViolation"
    wrong = "bfloat16" if level == "fp32" else "float32"
    assert f"precision {level!r} did not run as labelled" in result["reason"]
    assert (
        f"matmul_output: expected {precision.LEVELS[level].compute}, observed {wrong}"
        in result["reason"]
    )


def test_tf_loss_scale_follows_gradscaler_step_for_step():
    """DynamicLossScale against torch.amp.GradScaler's own update, over overflows and growth."""
    torch = pytest.importorskip("torch")
    tf = pytest.importorskip("tensorflow")
    from hlbench.backends.tf.optim import DynamicLossScale

    interval = 3
    ours = DynamicLossScale(2.0**16, 2.0, 0.5, interval)
    scale, tracker = torch.tensor([2.0**16]), torch.tensor([0], dtype=torch.int32)
    pattern = [
        False,
        True,
        False,
        False,
        False,
        False,
        False,
        False,
        True,
        True,
        False,
        False,
        False,
    ]
    for found in pattern:
        ours.update(tf.constant(found))
        torch._amp_update_scale_(scale, tracker, torch.tensor([float(found)]), 2.0, 0.5, interval)
        assert float(ours.scale) == float(scale) and int(ours.growth_tracker) == int(tracker)
    assert (
        int(ours.overflow_steps) == 3 and float(ours.scale) > 2.0**13
    )  # it grew back after overflows


def test_tf_bf16_adamw_rounds_like_torch_fused():
    """bf16-pure: TF's AdamW rounds like torch's fused kernel (fp32 arithmetic, one rounding per
    tensor):
    equal but for rare one-ulp differences (torch's kernel fuses multiply-adds); rounding each
    intermediate in bf16 (a foreach-style update) would differ in many elements."""
    torch = pytest.importorskip("torch")
    tf = pytest.importorskip("tensorflow")
    from hlbench.backends.tf.optim import AdamW
    from hlbench.cell import Optimizer

    rng = np.random.default_rng(0)
    p0, grads = (
        rng.normal(size=512).astype(np.float32),
        rng.normal(scale=1e-3, size=(3, 512)).astype(np.float32),
    )
    opt = Optimizer(
        "adamw", lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, grad_clip_norm=None
    )
    tp = torch.nn.Parameter(torch.from_numpy(p0).bfloat16())
    topt = torch.optim.AdamW(
        [tp], lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, fused=True
    )
    var = tf.Variable(tf.cast(p0, tf.bfloat16))
    ours = AdamW([var], [True], opt)
    for g in grads:
        tp.grad = torch.from_numpy(g).bfloat16()
        topt.step()
        ours.apply([tf.cast(g, tf.bfloat16)])
    pairs = [
        (tf.cast(var, tf.float32).numpy(), tp.detach().float().numpy()),
        (tf.cast(ours.m[0], tf.float32).numpy(), topt.state[tp]["exp_avg"].float().numpy()),
        (tf.cast(ours.v[0], tf.float32).numpy(), topt.state[tp]["exp_avg_sq"].float().numpy()),
    ]
    for a, b in pairs:
        assert np.mean(a != b) <= 0.01  # measured: 0 of 512 (param, exp_avg), 1 of 512 (exp_avg_sq)
        np.testing.assert_allclose(a, b, rtol=2.0**-7, atol=0)  # at most one bf16 ulp


def test_bf16_rounding_matches_both_frameworks():
    torch = pytest.importorskip("torch")
    tf = pytest.importorskip("tensorflow")
    x = np.random.default_rng(1).normal(scale=0.02, size=4096).astype(np.float32)
    ours = precision.round_to_storage(x, "bfloat16")
    np.testing.assert_array_equal(ours, torch.from_numpy(x).bfloat16().float().numpy())
    np.testing.assert_array_equal(ours, tf.cast(tf.cast(x, tf.bfloat16), tf.float32).numpy())


def test_gpu_precision_suite_and_script():
    """The GPU script's suite covers the whole PyTorch axis; the script parses (it runs only on
    GPUs)."""
    import subprocess
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    suite = load_suite(repo / "suites" / "gpu-precision.yaml")
    assert list(suite.config.backends) == ["torch"] and suite.config.device == "cuda"
    assert set(suite.config.axes.precision) == set(precision.LEVELS)
    script = repo / "benchmarks" / "gpu_precision.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    assert "suites/gpu-precision.yaml" in script.read_text()
