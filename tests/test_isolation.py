"""Framework isolation: everything that does not train works with neither PyTorch nor TensorFlow.

Each check runs in a fresh interpreter whose import system refuses `torch` and `tensorflow` (as if
they were not installed), so an accidental top-level framework import anywhere fails the test.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import REPO

BLOCKER = """
import importlib.abc, sys
BLOCKED = {BLOCKED!r}
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the test)")
        return None
sys.meta_path.insert(0, _Block())
from hlbench.cli import main
code = main({ARGV!r})
assert not BLOCKED & set(sys.modules), sorted(BLOCKED & set(sys.modules))
sys.exit(code)
"""


def _hlbench(args: list[str], blocked: set[str]) -> subprocess.CompletedProcess[str]:
    code = BLOCKER.format(BLOCKED=blocked, ARGV=args)
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )


NEITHER = {"torch", "tensorflow", "keras"}


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["env"],
        ["run", "suites/default.yaml", "--dry-run"],
        ["run", "--help"],
        ["parity", "--help"],
        ["table", "--help"],
        ["report", "--help"],
        ["compare", "--help"],
        ["baseline", "--help"],
    ],
)
def test_commands_that_do_not_train_need_no_framework(args):
    proc = _hlbench(args, NEITHER)
    assert proc.returncode == 0, proc.stderr


def test_env_says_which_frameworks_are_missing():
    proc = _hlbench(["env"], {"tensorflow"})
    assert proc.returncode == 0, proc.stderr
    assert '"tf": false' in proc.stdout


@pytest.mark.parametrize("blocked,named", [({"tensorflow"}, "tensorflow"), ({"torch"}, "torch")])
def test_a_suite_naming_a_missing_framework_is_refused_before_running(tmp_path, blocked, named):
    proc = _hlbench(["run", "suites/smoke.yaml", "--results-dir", str(tmp_path)], blocked)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("hlbench: error: suites/smoke.yaml: backends:") and repr(named) in line
    assert not any(tmp_path.iterdir())  # nothing ran, nothing written
