"""`.ci/run` sets KB_CI_FORBID_SKIPS=1 so that a suite which skips (no docker, no nvcc, no .venv-npu) fails
CI instead of passing it with less tested; held here on a two-test session run through our conftest."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from conftest import REPO


def _session(tmp_path, forbid: bool) -> subprocess.CompletedProcess:
    shutil.copy(REPO / "tests" / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_two.py").write_text("import pytest\n\ndef test_runs():\n    pass\n\n"
                                          "def test_skips():\n    pytest.skip('no docker daemon here')\n")
    env = {k: v for k, v in os.environ.items() if k != "KB_CI_FORBID_SKIPS"}
    if forbid:
        env["KB_CI_FORBID_SKIPS"] = "1"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)


def test_a_skip_fails_the_ci_session(tmp_path):
    r = _session(tmp_path, forbid=True)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "test_two.py::test_skips: Skipped: no docker daemon here" in r.stdout


def test_a_skip_is_a_skip_elsewhere(tmp_path):
    r = _session(tmp_path, forbid=False)
    assert r.returncode == 0 and "1 passed, 1 skipped" in r.stdout, r.stdout + r.stderr
