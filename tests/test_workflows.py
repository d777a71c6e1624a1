"""The GitHub workflows parse, call what exists, and turn compare's exit codes into the right
outcome."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from hlbench.cli import build_parser
from hlbench.comparison.metrics import METRICS
from hlbench.comparison.render import MD_MARKER
from tests.helpers import REPO

WORKFLOWS = REPO / ".github" / "workflows"
GPU_LABELS = ["self-hosted", "linux", "x64", "gpu", "hlbench-gpu"]
# Subcommands the workflows may call: run, env, compare, and the exports (table, report, baseline).
KNOWN_COMMANDS = {"run", "env", "compare", "baseline", "table", "report"}


def load(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 (PyYAML) reads the key `on` as the boolean True; GitHub reads it as "on".
    if True in doc:
        doc["on"] = doc.pop(True)
    return doc


def steps(doc: dict[str, Any], job: str) -> list[dict[str, Any]]:
    return doc["jobs"][job]["steps"]


def step(doc: dict[str, Any], job: str, name: str) -> dict[str, Any]:
    (found,) = [s for s in steps(doc, job) if s.get("name", "").startswith(name)]
    return found


def run_scripts() -> list[tuple[str, str]]:
    out = []
    for path in sorted(WORKFLOWS.glob("*.yml")):
        doc = load(path.name)
        for job_name, job in doc["jobs"].items():
            for s in job.get("steps", []):
                if "run" in s:
                    out.append((f"{path.name}:{job_name}:{s.get('name', s['run'][:30])}", s["run"]))
    return out


def test_every_workflow_is_valid_yaml_with_jobs():
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert {p.name for p in files} >= {"ci.yml", "gpu-bench.yml"}
    for path in files:
        doc = load(path.name)
        assert doc["name"] and doc["on"] and doc["jobs"], path
        assert doc["permissions"] == {"contents": "read"}, (
            f"{path.name}: least privilege at the top"
        )
        for job_name, job in doc["jobs"].items():
            assert "runs-on" in job and job.get("steps"), f"{path.name}: job {job_name}"
            for s in job["steps"]:
                assert ("uses" in s) != ("run" in s), (
                    f"{path.name}:{job_name}: a step either uses or runs"
                )
                if "uses" in s:
                    assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+", s["uses"]), s[
                        "uses"
                    ]  # pinned major


def test_cpu_workflow_runs_the_readme_commands_through_ci_run():
    doc = load("ci.yml")
    assert set(doc["on"]) >= {"push", "pull_request"}
    (job,) = doc["jobs"].values()
    assert job["runs-on"] == "ubuntu-latest"
    assert [s["run"].strip() for s in job["steps"] if "run" in s] == ["bash .ci/run"]
    # .ci/run is the README's install and test commands: the workflow inherits any change to them.
    readme = (REPO / "README.md").read_text()
    ci_run = (REPO / ".ci" / "run").read_text()
    install = re.search(r"^python3? -m venv \.venv && .* && (pip install .*)$", ci_run, re.M)
    assert install and install.group(1) in readme  # CI installs as the README's Test section says
    assert "python -m pytest" in readme and "python -m pytest" in ci_run
    assert "ruff check ." in readme and "ruff check ." in ci_run  # lint, as a user runs it


def test_gpu_workflow_structure():
    doc = load("gpu-bench.yml")
    assert set(doc["on"]) == {"pull_request", "push", "workflow_dispatch"}
    assert doc["on"]["workflow_dispatch"]["inputs"]["promote"]["type"] == "boolean"
    job = doc["jobs"]["bench"]
    assert job["runs-on"] == GPU_LABELS
    assert (
        "head.repo.full_name == github.repository" in job["if"]
    )  # no fork code on the self-hosted runner
    assert doc["concurrency"]["cancel-in-progress"] is False
    assert job["permissions"]["pull-requests"] == "write"
    assert "suites/ci-gpu.yaml" in step(doc, "bench", "Run suites/ci-gpu.yaml")["run"]
    upload = step(doc, "bench", "Upload records and reports")
    assert upload["uses"] == "actions/upload-artifact@v4" and upload["if"] == "always()"
    assert "RESULTS_DIR" in upload["with"]["path"] and "REPORTS_DIR" in upload["with"]["path"]
    post = step(doc, "bench", "Post the verdict")
    assert post["uses"].startswith("actions/github-script@") and MD_MARKER in post["with"]["script"]
    assert "pull_request" in post["if"]
    # The exports: the table as github-action-benchmark JSON, the report as markdown.
    exports = step(doc, "bench", "Report and github-action-benchmark export")["run"]
    assert (
        "hlbench table" in exports
        and "--format gab-json" in exports
        and "hlbench report" in exports
    )
    chart = doc["jobs"]["chart"]
    assert chart["needs"] == "bench" and chart["permissions"] == {"contents": "write"}


def test_labels_are_documented_and_known_to_actionlint():
    docs = (REPO / "docs" / "ci.md").read_text()
    assert ", ".join(GPU_LABELS) in docs
    config = yaml.safe_load((REPO / ".github" / "actionlint.yaml").read_text())
    assert set(config["self-hosted-runner"]["labels"]) == set(GPU_LABELS) - {
        "self-hosted",
        "linux",
        "x64",
    }


def test_documented_exit_codes_match_the_code():
    from hlbench.comparison.verdicts import (
        EXIT_INCOMPARABLE,
        EXIT_INCONCLUSIVE,
        EXIT_OK,
        EXIT_REGRESSED,
    )

    assert (EXIT_OK, EXIT_REGRESSED, EXIT_INCOMPARABLE, EXIT_INCONCLUSIVE) == (0, 1, 2, 3)
    docs = (REPO / "docs" / "ci.md").read_text()
    for code in ("| 2 |", "| 1 |", "| 3 |", "| 0 |", "2 > 1 > 3 > 0"):
        assert code in docs


def test_workflow_hlbench_invocations_parse():
    doc = load("gpu-bench.yml")
    metrics = shlex.split(doc["jobs"]["bench"]["env"]["COMPARE_METRICS"])
    assert {m for m in metrics if m != "--metric"} <= set(METRICS)
    parser = build_parser()
    args = parser.parse_args(["compare", "b", "c", *metrics, "--format", "md", "-o", "x.md"])
    assert args.func.__name__ == "cmd_compare"
    for _, script in run_scripts():
        for command in re.findall(r"\bhlbench ([a-z]+)", script):
            assert command in KNOWN_COMMANDS, command


@pytest.mark.parametrize(
    "code, exit_status", [("0", 0), ("3", 0), ("none", 0), ("1", 1), ("2", 1), ("", 1)]
)
def test_verdict_step_fails_on_regression_and_incomparable(code, exit_status):
    script = step(load("gpu-bench.yml"), "bench", "Verdict")["run"]
    proc = subprocess.run(
        ["bash", "-e", "-c", script],
        env={"CODE": code, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert proc.returncode == exit_status, proc.stdout + proc.stderr


def _shell(script: str) -> str:
    return re.sub(
        r"\$\{\{.*?\}\}", "EXPR", script
    )  # GitHub expressions are substituted before bash runs


def test_run_blocks_are_valid_bash():
    for where, script in run_scripts():
        proc = subprocess.run(
            ["bash", "-n"], input=_shell(script), capture_output=True, text=True, timeout=10
        )
        assert proc.returncode == 0, f"{where}: {proc.stderr}"


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_run_blocks_pass_shellcheck():
    for where, script in run_scripts():
        proc = subprocess.run(
            ["shellcheck", "-s", "bash", "-e", "SC2129,SC1091", "-"],
            input=_shell(script),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert proc.returncode == 0, f"{where}:\n{proc.stdout}"


@pytest.mark.skipif(shutil.which("actionlint") is None, reason="actionlint not installed")
def test_actionlint():
    proc = subprocess.run(["actionlint"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ci_gpu_suite_is_valid_and_gives_enough_samples():
    from hlbench.suite import load_suite

    suite = load_suite(REPO / "suites" / "ci-gpu.yaml")
    c = suite.config
    assert c.device == "cuda" and list(c.backends) == ["torch"]
    assert set(c.axes.precision) == {"fp32", "bf16"} and set(c.axes.accumulation) == {1, 4}
    m = c.measurement
    from hlbench.comparison.verdicts import DEFAULT_THRESHOLDS

    # The run is compare's unit: enough repeats per cell for a test at the default alpha.
    assert m.repeats >= DEFAULT_THRESHOLDS.runs_needed() == 5
    assert len(suite.cells) == 4
    # The workflow looks for the records under the suite's name.
    assert (
        suite.name == "ci-gpu"
        and "ci-gpu/*.jsonl" in step(load("gpu-bench.yml"), "bench", "Run suites")["run"]
    )
