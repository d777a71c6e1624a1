from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def write_suite(tmp_path: Path) -> Callable[[str], Path]:
    """Write a suite YAML (dedented) into tmp_path and return its path."""

    def write(text: str, name: str = "suite.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write


@pytest.fixture
def fault_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment that registers the test-only `fault` backend for the CLI and its workers."""
    monkeypatch.setenv("HLBENCH_BACKENDS", "fault=tests.fault_backend:SPEC")
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    )
    monkeypatch.setenv("HLBENCH_TEST_PIDFILE", str(tmp_path / "pids"))
    return dict(os.environ)


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """`hlbench ARGS` as a user runs it, in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "hlbench", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
