"""Exports, each read back with the target's own library: MLflow runs with MlflowClient,
TensorBoard event files with TensorBoard's EventAccumulator, JUnit XML with an XML parser against
the elements and attributes the JUnit schemas require. The records come from one real `hlbench run
--mlflow` of a tiny suite (two cells), so the runs exported are the ones a user gets.
"""

from __future__ import annotations

import json
import subprocess
import sys
import types
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from hlbench.cli import main
from hlbench.export.source import CellRun
from hlbench.export.to_tensorboard import cell_dir
from tests.helpers import REPO, record, run_cli, runs, suite_yaml, write

SUITE = suite_yaml(
    name="exp",
    axes={"accumulation": [1, 2]},
    measurement={
        "warmup_steps": 1,
        "steps": 3,
        "windows": 2,
        "eval_batches": 1,
        "repeats": 1,
    },
)
N_RECORDS = 2  # 2 cells × 1 repeat
# mlflow's own use of SQLAlchemy, not ours
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")


@pytest.fixture(scope="module")
def suite_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One `hlbench run --report --mlflow=STORE` of the tiny suite: its records and the store."""
    pytest.importorskip("mlflow")
    root = tmp_path_factory.mktemp("export")
    (root / "suite.yaml").write_text(SUITE)
    store = root / "store"
    proc = run_cli(
        "run", "suite.yaml", "--quiet", "--report", f"--mlflow={store}", cwd=root, timeout=240
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (records_path,) = (root / "results" / "exp").glob("*.jsonl")
    records = [json.loads(line) for line in records_path.read_text().splitlines()]
    assert len(records) == N_RECORDS and all(r["status"] == "ok" for r in records)
    assert "mlflow: 2 cell run(s) logged" in proc.stdout, proc.stdout
    return {"root": root, "records_path": records_path, "records": records, "store": store}


def _client(store: Path) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")


def _runs(client: Any, experiment: str) -> tuple[Any, dict[str, Any]]:
    """The experiment's one parent run and its cell runs by record key."""
    exp = client.get_experiment_by_name(experiment)
    found = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in found if r.data.tags.get("hlbench.kind") == "suite-run"]
    cells = {r.data.tags["hlbench.record_key"]: r for r in found if r not in parents}
    assert len(parents) == 1, parents
    return parents[0], cells


def test_mlflow_run_per_cell_nested_under_its_suite_run(suite_run):
    client = _client(suite_run["store"])
    parent, cells = _runs(client, "exp")
    records = suite_run["records"]
    assert parent.info.run_name == records[0]["run_id"] and parent.info.status == "FINISHED"
    assert len(cells) == N_RECORDS
    for rec in records:
        run = cells[f"{rec['run_id']}/{rec['cell_hash']}/r{rec['repeat']}"]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.info.run_name == rec["cell_id"]  # one repeat: no "(repeat N)"
        params = run.data.params
        assert params["accumulation"] == str(rec["cell"]["axes"]["accumulation"])
        assert params["precision"] == "fp32" and params["backend"] == "torch"
        assert params["workload.seq_len"] == "8" and params["workload.spec.model"] == "gpt"
        assert run.data.metrics["tokens_per_s"] == pytest.approx(rec["metrics"]["tokens_per_s"])
        assert run.data.metrics["eval_loss_nats"] == pytest.approx(rec["loss"]["eval_loss"])
        _check_history(client, run.info.run_id, rec)


def _check_history(client: Any, run_id: str, rec: dict[str, Any]) -> None:
    steps = client.get_metric_history(run_id, "step_time_s")
    measured = [t for window in rec["timing"]["window_step_times_s"] for t in window]
    warmup = len(rec["timing"]["warmup_step_times_s"])
    assert [m.step for m in steps] == list(range(warmup, warmup + len(measured)))
    assert [m.value for m in steps] == pytest.approx(measured)
    loss = client.get_metric_history(run_id, "train_loss_nats")
    assert [m.value for m in loss] == pytest.approx(rec["loss"]["train_loss_per_step"])
    assert [m.step for m in loss] == list(range(len(rec["loss"]["train_loss_per_step"])))


def test_mlflow_artifacts_hold_the_record_log_and_report(suite_run, tmp_path):
    client = _client(suite_run["store"])
    parent, cells = _runs(client, "exp")
    rec = suite_run["records"][0]
    run_id = cells[f"{rec['run_id']}/{rec['cell_hash']}/r{rec['repeat']}"].info.run_id
    paths = {a.path for a in client.list_artifacts(run_id)}
    assert {"record.json", "logs"} <= paths, paths
    downloaded = Path(client.download_artifacts(run_id, "record.json", str(tmp_path)))
    assert json.loads(downloaded.read_text()) == rec
    (log,) = client.list_artifacts(run_id, "logs")
    assert log.path.endswith(f"{rec['cell_hash']}-r{rec['repeat']}.log")
    report = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert any(p.endswith(".md") for p in report), report
    (plots,) = [p for p in report if p.endswith("_plots")]
    assert any(a.path.endswith(".png") for a in client.list_artifacts(parent.info.run_id, plots))


def test_export_again_is_idempotent_and_replaces_a_changed_record(suite_run, tmp_path):
    store, records = suite_run["store"], suite_run["records"]
    # in a fresh process that must never load a framework: the exporters import none
    code = (
        "import sys; from hlbench.cli import main; rc = main(sys.argv[1:]); "
        "bad = [m for m in ('torch', 'tensorflow') if m in sys.modules]; "
        "assert not bad, bad; sys.exit(rc)"
    )
    args = [
        "export",
        "--to",
        "mlflow",
        str(suite_run["records_path"]),
        "--tracking-uri",
        str(store),
    ]
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 cell run(s) logged; 2 already there" in proc.stdout, proc.stdout
    changed = [dict(r) for r in records]
    changed[1]["metrics"] = {**changed[1]["metrics"], "tokens_per_s": 1.0}
    write(tmp_path / "changed.jsonl", changed)
    assert main(["export", "--to", "mlflow", str(tmp_path), "--tracking-uri", str(store)]) == 0
    _, cells = _runs(_client(store), "exp")
    assert len(cells) == N_RECORDS
    key = f"{records[1]['run_id']}/{records[1]['cell_hash']}/r{records[1]['repeat']}"
    assert cells[key].data.metrics["tokens_per_s"] == 1.0


def test_mlflow_experiment_option_and_a_second_suite_run(suite_run, tmp_path):
    store = suite_run["store"]  # another experiment in the same store
    other = [{**r, "run_id": "second-run"} for r in suite_run["records"]]
    again = [{**r, "repeat": 1} for r in other]  # each cell twice in the second run
    write(tmp_path / "r.jsonl", suite_run["records"] + other + again)
    args = ["export", "--to", "mlflow", str(tmp_path / "r.jsonl"), "--tracking-uri", str(store)]
    report = suite_run["records_path"].with_suffix(".md")  # written by run --report
    assert report.exists()
    assert main([*args, "--experiment", "mine", "--report", str(report)]) == 0
    client = _client(store)
    exp = client.get_experiment_by_name("mine")
    found = client.search_runs([exp.experiment_id], max_results=1000)
    parents = {r.info.run_name: r for r in found if r.data.tags["hlbench.kind"] == "suite-run"}
    assert set(parents) == {suite_run["records"][0]["run_id"], "second-run"}
    assert len(found) == 2 + 3 * N_RECORDS
    second = parents["second-run"].info.run_id
    names = {r.info.run_name for r in found if r.data.tags.get("mlflow.parentRunId") == second}
    first = suite_run["records"][0]["cell_id"]
    assert {f"{first} (repeat 0)", f"{first} (repeat 1)"} <= names, names
    attached = {a.path for a in client.list_artifacts(second, "report")}
    assert f"report/{report.name}" in attached and f"report/{report.stem}_plots" in attached


def test_tensorboard_event_files_per_cell(suite_run, tmp_path, capsys, monkeypatch):
    # TensorBoard's documented switch to its TensorFlow stub: reading event files then needs no
    # TensorFlow (seconds of import saved; the files read the same)
    monkeypatch.setitem(sys.modules, "tensorboard.compat.notf", types.ModuleType("notf"))
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")

    out = tmp_path / "tb"
    assert main(["export", "--to", "tensorboard", str(out), str(suite_run["records_path"])]) == 0
    assert "2 cell run(s) written" in capsys.readouterr().out
    for rec in suite_run["records"]:
        directory = out / "exp" / rec["run_id"] / Path(*rec["cell_id"].split("/"))
        acc = accumulator.EventAccumulator(str(directory / f"r{rec['repeat']}"))
        acc.Reload()
        assert {"step/step_time_s", "step/train_loss_nats", "summary/tokens_per_s"} <= set(
            acc.Tags()["scalars"]
        )
        measured = [t for window in rec["timing"]["window_step_times_s"] for t in window]
        steps = acc.Scalars("step/step_time_s")
        assert [e.value for e in steps] == pytest.approx(measured, rel=1e-6)
        assert [e.step for e in steps] == list(range(1, 1 + len(measured)))  # 1 warmup step
        (tps,) = acc.Scalars("summary/tokens_per_s")
        assert tps.value == pytest.approx(rec["metrics"]["tokens_per_s"], rel=1e-6)
        (text,) = acc.Tensors("cell")
        assert rec["cell_id"].encode() in text.tensor_proto.string_val[0]
        hparams = acc.SummaryMetadata("_hparams_/session_start_info").plugin_data
        assert hparams.plugin_name == "hparams" and b"accumulation" in hparams.content
    events = sorted(out.rglob("events.out.tfevents.*"))
    assert (
        main(["export", "--to", "tensorboard", "-o", str(out), str(suite_run["records_path"])]) == 0
    )
    assert "0 cell run(s) written; 2 already there" in capsys.readouterr().out
    assert sorted(out.rglob("events.out.tfevents.*")) == events
    changed = [dict(r) for r in suite_run["records"]]
    changed[0]["metrics"] = {**changed[0]["metrics"], "tokens_per_s": 1.0}
    write(tmp_path / "changed.jsonl", changed)
    assert main(["export", "--to", "tensorboard", str(out), str(tmp_path / "changed.jsonl")]) == 0
    assert "0 cell run(s) written; 1 replaced (the record changed); 1 already there" in (
        capsys.readouterr().out
    )
    directory = out / "exp" / changed[0]["run_id"] / Path(*changed[0]["cell_id"].split("/")) / "r0"
    (event_file,) = directory.glob("events.out.tfevents.*")  # the earlier one is gone
    acc = accumulator.EventAccumulator(str(directory))
    acc.Reload()
    assert [e.value for e in acc.Scalars("summary/tokens_per_s")] == [1.0]


def test_tensorboard_directories_stay_inside_the_log_directory(tmp_path):
    rec = record([10_000.0] * 4, cell_id="../../../etc/x/2:4", run_id="..")
    cell = CellRun(rec, tmp_path / "r.jsonl", {})
    directory = cell_dir(tmp_path / "tb", cell)
    assert directory.resolve().is_relative_to((tmp_path / "tb").resolve())
    assert directory.name == "r0" and "2_4" in directory.parts


@pytest.mark.parametrize(
    "args, message",
    [
        (["--to", "tensorboard", "r.jsonl"], "the log directory and then the runs"),
        (["--to", "tensorboard", "a.jsonl", "r.jsonl"], "a file, not a log directory"),
        (["--to", "mlflow", "-o", "x", "r.jsonl"], "-o applies to --to tensorboard"),
        (["--to", "tensorboard", "tb", "r.jsonl", "--experiment", "e"], "applies to --to mlflow"),
    ],
)
def test_bad_export_arguments_are_one_line(args, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "r.jsonl", [record([10_000.0] * 4)])
    assert main(["export", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


@pytest.mark.parametrize(
    "target, module, extra",
    [("mlflow", "mlflow", "mlflow"), ("tensorboard", "tensorboard", "tensorboard")],
)
def test_a_missing_extra_is_named(target, module, extra, tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == module else real(name, *a)
    )
    path = write(tmp_path / "r.jsonl", [record([10_000.0] * 4)])
    where = [str(tmp_path / "tb")] if target == "tensorboard" else []
    assert main(["export", "--to", target, *where, str(path)]) == 2
    err = capsys.readouterr().err
    assert f"hlbench[{extra}]" in err and err.count("\n") == 1, err
    if target == "mlflow":  # run --mlflow refuses before anything runs
        (tmp_path / "s.yaml").write_text(SUITE)
        assert (
            main(["run", str(tmp_path / "s.yaml"), "--mlflow", "--results-dir", str(tmp_path)]) == 2
        )
        assert "hlbench[mlflow]" in capsys.readouterr().err
        assert not (tmp_path / "exp").exists()


# ------------------------------------------------------------------------------------------------
# JUnit XML from compare


def _junit(tmp_path: Path, base: list[dict[str, Any]], cand: list[dict[str, Any]], *args: str):
    b, c = write(tmp_path / "base.jsonl", base), write(tmp_path / "cand.jsonl", cand)
    out = tmp_path / "out" / "compare.xml"
    code = main(["compare", str(b), str(c), "--format", "junit", "-o", str(out), *args])
    root = ET.parse(out).getroot()
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    for name in ("name", "tests", "failures", "errors", "skipped", "time", "timestamp", "hostname"):
        assert suite.get(name), name
    assert suite.find("properties") is not None and suite.find("system-out") is not None
    assert suite.find("system-err") is not None
    cases = suite.findall("testcase")
    for case in cases:
        assert case.get("classname") and case.get("name") and float(case.get("time")) >= 0
    for name in ("tests", "failures", "errors", "skipped"):
        assert root.get(name) == suite.get(name)
    return code, suite, {(c.get("classname"), c.get("name")): c for c in cases}


def test_junit_one_case_per_cell_and_metric(tmp_path):
    fast, slow, few = "gpt-a/torch/fp32/ga1/none", "gpt-b/torch/fp32/ga1/none", "gpt-c/x"
    base = [
        *runs(6, 10_000.0, 0.005, 1, cell_id=fast, cell_hash="a" * 16),
        *runs(6, 10_000.0, 0.005, 2, cell_id=slow, cell_hash="b" * 16),
        *runs(2, 10_000.0, 0.005, 3, cell_id=few, cell_hash="c" * 16),
        record([10_000.0] * 8, cell_id="gpt-d/x", cell_hash="d" * 16),
    ]
    cand = [
        *runs(6, 10_000.0, 0.005, 4, cell_id=fast, cell_hash="a" * 16),
        *runs(6, 8_000.0, 0.005, 5, cell_id=slow, cell_hash="b" * 16),
        *runs(2, 10_000.0, 0.005, 6, cell_id=few, cell_hash="c" * 16),
        record(None, cell_id="gpt-d/x", cell_hash="d" * 16, status="oom"),
    ]
    code, suite, cases = _junit(
        tmp_path, base, cand, "--metric", "tokens_per_s", "--metric", "peak_memory_bytes"
    )
    assert code == 1  # regressed
    assert len(cases) == 8 and suite.get("tests") == "8"
    regressed = cases[(slow, "tokens_per_s")].find("failure")
    assert regressed.get("type") == "regressed" and "-20" in regressed.get("message")
    failed = cases[("gpt-d/x", "tokens_per_s")].find("failure")
    assert failed.get("type") == "failed" and "oom" in failed.get("message")
    skipped = cases[(few, "tokens_per_s")].find("skipped")
    assert skipped.get("message").startswith("inconclusive: ")
    assert len(skipped.get("message")) > len("inconclusive: ")
    passed = cases[(fast, "tokens_per_s")]
    assert not list(passed.iter("failure")) and not list(passed.iter("skipped"))
    failures = sum(1 for c in cases.values() if c.find("failure") is not None)
    skips = sum(1 for c in cases.values() if c.find("skipped") is not None)
    assert suite.get("failures") == str(failures) and suite.get("skipped") == str(skips)
    assert suite.get("errors") == "0"


def test_junit_incomparable_runs_are_one_error(tmp_path):
    base = runs(6, 10_000.0, 0.005, 1)
    cand = runs(6, 10_000.0, 0.005, 2, gpus=["NVIDIA A100-SXM4-80GB"])
    code, suite, cases = _junit(tmp_path, base, cand)
    assert code == 2 and suite.get("errors") == "1" and suite.get("tests") == "1"
    (case,) = cases.values()
    assert "not comparable" in case.find("error").get("message")


def test_junit_is_not_a_calibration_format(tmp_path, capsys):
    path = write(tmp_path / "r.jsonl", runs(6, 10_000.0, 0.005, 1))
    assert main(["compare", "--calibrate", str(path), str(path), "--format", "junit"]) == 2
    assert "--format junit is for a comparison" in capsys.readouterr().err


def test_a_store_mlflow_refuses_is_one_line(tmp_path, capsys):
    pytest.importorskip("mlflow")
    path = write(tmp_path / "r.jsonl", [record([10_000.0] * 4)])
    args = ["export", "--to", "mlflow", str(path), "--tracking-uri", "nosuchscheme://x"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("hlbench: error: mlflow (nosuchscheme://x): ") and err.count("\n") == 1
