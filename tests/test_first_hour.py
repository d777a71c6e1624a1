"""A new user's first hour: the built wheel works outside the clone, shipped suites run by name, the
Python API, and the stumbles of a first session (bare `hlbench`, help, progress in logs, hints,
YAML 1.1 booleans, "did you mean", a readable `hlbench env`)."""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import tomllib

import hlbench
from hlbench.cli import build_parser, main
from hlbench.suite import load_suite
from hlbench.suite.shipped import SHIPPED_DIR, shipped
from tests.helpers import REPO, run_cli, suite_yaml

FAULT_SUITE = suite_yaml(
    name="api",
    backends=["fault"],
    workloads=[{"model": "gpt", "size": "tiny", "seq_len": 8, "batch_size": 4}],
    axes={"accumulation": [1, 2]},
    measurement={"warmup_steps": 1, "steps": 2, "windows": 2, "repeats": 2, "eval_batches": 1},
    device=None,
)


# --------------------------------------------------------------------------------------------------
# The wheel, installed outside the repository


def _build_wheel(out: Path) -> Path:
    """The wheel of a copy of the sources (a build in the clone would leave build/ and egg-info)."""
    pytest.importorskip("setuptools", reason="building the wheel offline needs setuptools (dev)")
    src = out / "src"
    shutil.copytree(REPO / "hlbench", src / "hlbench", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", out, src],
        capture_output=True,
        text=True,
        timeout=180,
        env=_isolated_pip_env(),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = out.glob("hlbench-*.whl")
    return wheel


def _isolated_pip_env() -> dict[str, str]:
    """pip without this machine's configuration (mirrors, caps): nothing is fetched anyway."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.pop("PYTHONPATH", None)
    return env


def test_the_wheel_ships_the_suites_and_runs_them_by_name(tmp_path):
    import zipfile

    wheel = _build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    assert {f"hlbench/suites/{p.name}" for p in SHIPPED_DIR.glob("*.yaml")} <= set(names)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True, timeout=60)
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps"]
    proc = subprocess.run(
        [*pip, "--no-index", str(wheel)], capture_output=True, text=True, env=_isolated_pip_env()
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    # The wheel's dependencies come from this interpreter's environment (offline); hlbench itself
    # only from the wheel, since the venv's own site-packages comes first on sys.path.
    site = Path(
        subprocess.check_output(
            [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], text=True
        ).strip()
    )
    deps = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    (site / "shared-deps.pth").write_text("\n".join(sorted(deps)) + "\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = _isolated_pip_env()

    def hlbench_(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [venv / "bin" / "hlbench", *args],
            cwd=elsewhere,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    listed = hlbench_("suites", "--paths")
    assert listed.returncode == 0, listed.stderr
    paths = dict(line.split(None, 1) for line in listed.stdout.splitlines())
    assert str(site) in paths["smoke"], "the suite must come from the installed wheel"
    described = hlbench_("suites")
    assert re.search(r"^smoke +Smoke suite: tiny models", described.stdout, re.M), described.stdout
    dry = hlbench_("run", "smoke", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "gpt-tiny/torch/fp32/ga1/none" in dry.stdout and "in suite 'smoke'" in dry.stdout
    assert not (elsewhere / "results").exists()


# --------------------------------------------------------------------------------------------------
# Shipped suites by name, `hlbench suites`, `hlbench init`


def test_the_clone_link_and_the_package_hold_the_same_suites():
    assert (REPO / "suites").resolve() == SHIPPED_DIR
    assert set(shipped()) >= {"smoke", "default"}


def test_run_takes_a_shipped_name_and_refuses_an_unknown_one(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "smoke", "--dry-run"]) == 0
    assert "in suite 'smoke'" in capsys.readouterr().out
    assert main(["run", "smok", "--dry-run"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "did you mean 'smoke'?" in line and "shipped: " in line and "default" in line
    assert main(["parity", "smok"]) == 2  # parity takes shipped names too
    assert "did you mean 'smoke'?" in capsys.readouterr().err


def test_suites_lists_one_line_each(capsys):
    assert main(["suites"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(shipped())
    assert all(len(line.split(None, 1)) == 2 for line in lines), lines  # a description each


def test_init_writes_a_suite_that_loads_and_never_overwrites(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["init"]) == 0
    starter = tmp_path / "my-suite.yaml"
    suite = load_suite(starter)
    assert suite.name == "my-suite" and len(suite.cells) == 4
    assert starter.read_text().count("#") > 20  # commented, key by key
    before = starter.read_text()
    assert main(["init", "my-suite"]) == 2
    assert "exists" in capsys.readouterr().err and starter.read_text() == before
    assert main(["init", "gpu-run", "--from", "default"]) == 0
    copy = load_suite(tmp_path / "gpu-run.yaml")
    assert copy.name == "gpu-run" and len(copy.cells) == len(load_suite(shipped()["default"]).cells)


# --------------------------------------------------------------------------------------------------
# The Python API


def test_import_hlbench_stays_light():
    code = (
        "import sys, hlbench; heavy = ['pandas', 'numpy', 'torch', 'tensorflow', 'pydantic', "
        "'scipy', 'hlbench.api']; print([m for m in heavy if m in sys.modules]); "
        "print(callable(hlbench.run) and 'hlbench.api' in sys.modules)"
    )
    out = subprocess.check_output([sys.executable, "-c", code], cwd=REPO, text=True)
    assert out.split("\n")[:2] == ["[]", "True"]


def test_help_imports_neither_pydantic_nor_pandas():
    # `hlbench --help` stays fast: the new commands load hlbench.suite (pydantic) only when run
    code = (
        "import sys; from hlbench.cli import build_parser; build_parser(); "
        "print([m for m in ('pydantic', 'pandas', 'numpy') if m in sys.modules])"
    )
    assert subprocess.check_output([sys.executable, "-c", code], cwd=REPO, text=True) == "[]\n"


def test_run_load_compare_and_report_from_python(write_suite, fault_env, tmp_path, capsys):
    path = write_suite(FAULT_SUITE)
    first = hlbench.run(str(path), results_dir=tmp_path / "results")
    second = hlbench.run(path, results_dir=str(tmp_path / "results"), only="*/ga1/*")
    assert first.exit_code == 0 and len(first.records) == 4 and len(second.records) == 2
    assert first.records_path.parent == tmp_path / "results" / "api"
    assert sorted(first.frame["cell_id"].unique()) == [
        "gpt-tiny/fault/fp32/ga1/none",
        "gpt-tiny/fault/fp32/ga2/none",
    ]
    both = hlbench.load(str(tmp_path / "results"))  # a str is one path, not a list of letters
    assert len(both) == 6 and set(both["run_id"]) == {first.run_id, second.run_id}
    assert len(hlbench.results.load(str(first.records_path))) == 4

    verdict = hlbench.compare(first.records_path, str(second.records_path), metrics="all")
    assert verdict.exit_code == 3 and verdict.error is None  # 2 runs per side: too few to decide
    rows = verdict.frame
    assert set(rows["cell_id"]) == {"gpt-tiny/fault/fp32/ga1/none"} and len(rows) > 1
    assert set(rows["verdict"]) <= {"inconclusive", "unchanged", "not available"}
    assert json.loads(verdict.render("json"))["verdict"] == verdict.verdict
    # the CLI is the same comparison
    cli = ["compare", str(first.records_path), str(second.records_path), "--metric", "all"]
    assert main([*cli, "--format", "json"]) == verdict.exit_code
    assert json.loads(capsys.readouterr().out) == json.loads(verdict.render("json"))

    out = first.report()
    assert out == first.records_path.with_suffix(".md") and "gpt-tiny" in out.read_text()


def test_api_errors_are_the_cli_messages(tmp_path):
    with pytest.raises(hlbench.errors.UsageError, match="did you mean 'smoke'"):
        hlbench.run("smok")
    with pytest.raises(hlbench.errors.UsageError, match="no such records file"):
        hlbench.load(str(tmp_path / "nothing"))
    with pytest.raises(hlbench.errors.UsageError, match="metric tokens: unknown"):
        hlbench.api.metric_names("tokens")


# --------------------------------------------------------------------------------------------------
# Stumbles


def test_bare_hlbench_prints_the_commands(tmp_path):
    proc = run_cli(cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    for word in (
        "commands:",
        "run ",
        "suites",
        "init",
        "compare",
        "start here:",
        "choose a command",
    ):
        assert word in proc.stderr, word
    sub = run_cli("baseline", cwd=tmp_path)
    assert sub.returncode == 2 and "save" in sub.stderr and "show" in sub.stderr


def _parsers(parser: argparse.ArgumentParser, prog: str = "hlbench"):
    yield prog, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _parsers(child, f"{prog} {name}")


def test_every_command_and_option_has_help():
    missing = []
    for prog, parser in _parsers(build_parser()):
        if prog != "hlbench" and not parser.description:
            missing.append(f"{prog}: no description")
        for action in parser._actions:
            if not action.help and not isinstance(action, argparse._SubParsersAction):
                missing.append(f"{prog} {action.dest}: no help")
            if isinstance(action, argparse._SubParsersAction):
                helped = {a.dest for a in action._choices_actions if a.help}
                missing += [f"{prog} {n}: no help line" for n in action.choices if n not in helped]
    assert not missing, missing


def test_progress_is_off_when_stderr_is_not_a_terminal(monkeypatch):
    from hlbench.sweep.progress import Progress

    class Task:
        label = "gpt-tiny/torch/fp32/ga1/none"

    captured = io.StringIO()
    monkeypatch.setattr(sys, "stderr", captured)
    bar = Progress([Task(), Task()])
    bar.start(Task())
    bar.record(Task(), {"status": "ok", "reason": None})
    bar.close()
    assert captured.getvalue() == ""


def test_next_hint_points_beside_the_records(write_suite, fault_env, tmp_path):
    proc = run_cli(
        "run", str(write_suite(FAULT_SUITE)), "--only", "*/ga1/*", cwd=tmp_path, env=fault_env
    )
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stderr  # no progress bar in a captured stderr
    (hint,) = [line for line in proc.stdout.splitlines() if line.startswith("next: ")]
    records = next((tmp_path / "results" / "api").glob("*.jsonl")).relative_to(tmp_path)
    assert hint == f"next: hlbench report {records} -o {records.with_suffix('.md')}"
    assert "reports/" not in hint


@pytest.mark.parametrize(
    "old,new,fix",
    [
        ("pruning: [none]", "pruning: [off]", '"off" (quoted)'),
        ("compile: [false]", "compile: [no]", '"no" (quoted) for the word, or false'),
    ],
)
def test_yaml11_booleans_are_refused_with_the_fix(write_suite, capsys, old, new, fix):
    text = suite_yaml(axes={"pruning": ["none"], "compile": [False]})
    assert old in text
    path = write_suite(text.replace(old, new))
    assert main(["run", str(path), "--dry-run"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"hlbench: error: {path}: line ") and fix in line, line


def test_quoted_words_and_real_booleans_still_load(write_suite):
    text = suite_yaml(axes={"compile": [False]}, pruning={"off": {"method": "none"}})
    text = text.replace("compile: [false]", 'compile: [false, true]\n  pruning: ["off"]')
    suite = load_suite(write_suite(text))
    assert {c.axes["pruning"] for c in suite.cells} == {"off"} and len(suite.cells) == 2


@pytest.mark.parametrize(
    "old,new,suggestion",
    [
        ("workloads:", "worklods:", "unknown key; did you mean 'workloads'?"),
        ("warmup_steps: 1", "warmup_step: 1", "did you mean 'warmup_steps'?"),
        ("precision: [fp32]", "precision: [bf61]", "did you mean 'bf16'?"),
        ("pruning: [none]", "pruning: [magnitud]", "(did you mean 'magnitude'?)"),
        ("model: gpt", "model: gtp", "did you mean 'gpt'?"),
    ],
)
def test_unknown_keys_and_values_say_what_was_meant(write_suite, capsys, old, new, suggestion):
    text = suite_yaml(axes={"precision": ["fp32"], "pruning": ["none"]})
    assert old in text
    path = write_suite(text.replace(old, new, 1))
    assert main(["run", str(path), "--dry-run"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert suggestion in line, line


def test_env_reads_as_text_and_as_json():
    text = run_cli("env", "--format", "text", "--no-calibrate", cwd=REPO)
    assert text.returncode == 0, text.stderr
    keys = [line.split()[0] for line in text.stdout.splitlines() if line and not line[0].isspace()]
    assert {"host", "cpu", "python", "backends", "gpus"} <= set(keys), text.stdout
    piped = run_cli("env", "--no-calibrate", cwd=REPO)  # not a terminal: JSON, as before
    assert "backends_installed" in json.loads(piped.stdout)


def test_env_text_names_each_gpu():
    from hlbench.commands.env import render

    gpu = {"index": 0, "name": "NVIDIA H200", "memory_total_bytes": 150_000_000_000}
    report = {
        "host": {"hostname": "n1", "os": "Linux 6", "machine": "x86_64", "cpu_logical_cores": 16},
        "backends_installed": {"torch": True, "tf": False},
        "packages": {"torch": "2.13.0"},
        "nvml": {
            "available": True,
            "driver_version": "580.1",
            "nvml_version": "13",
            "gpus": [{**gpu, "peak_bf16_dense_flops": 989e12}, {**gpu, "index": 1}],
        },
    }
    lines = render(report).splitlines()
    assert "torch: ready (torch 2.13.0); tf: missing tensorflow" in lines[3]
    assert lines[5].split(None, 1) == ["gpus", "0: NVIDIA H200, 140 GiB, bf16 peak 989 TFLOP/s"]
    assert lines[6].strip() == "1: NVIDIA H200, 140 GiB, bf16 peak unknown"
    assert lines[7].split(None, 1) == ["driver", "580.1 (NVML 13)"]


# --------------------------------------------------------------------------------------------------
# Install: hints that work, constraints that CI uses


def test_install_hints_name_commands_that_exist():
    from hlbench.backends import registry

    for spec in registry().values():
        assert "hlbench[" not in spec.install_hint, spec.install_hint  # no such package on PyPI


def test_constraints_pin_what_pyproject_asks_for_and_ci_uses_them():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name.strip().lower().replace("_", "-")] = version.strip()
    extras = project["optional-dependencies"]
    # the tested set: the core and the extras CI installs (parquet and profile are not tested)
    wanted = [*project["dependencies"], *extras["torch"], *extras["tf"], *extras["dev"]]
    for requirement in wanted:
        name = re.match(r"[A-Za-z0-9._-]+", requirement).group(0).lower().replace("_", "-")
        assert name in pins, f"{name} is not pinned in constraints.txt"
        assert "+" not in pins[name], f"{name}=={pins[name]}: a local build label pins one index"
    assert "-c constraints.txt" in (REPO / ".ci" / "run").read_text()
