from __future__ import annotations

import os
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import REPO


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


@pytest.fixture(autouse=True, scope="session")
def _calibration_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests never read or write the user's CPU-peak cache (hlbench.telemetry.calibration): one
    temporary cache for the session, inherited by every CLI and worker process."""
    from hlbench.telemetry.calibration import CACHE_DIR_ENV

    os.environ[CACHE_DIR_ENV] = str(tmp_path_factory.mktemp("hlbench-cache"))
