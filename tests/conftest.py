"""Shared fixtures: real builds of real projects with the real CLI, in a subprocess.

Builds use the user's kernel-builder cache (KERNEL_BUILDER_CACHE or ~/.cache/kernel-builder) unless a
test sets its own, so `.ci/run`'s build of kernels_src makes the fixtures' builds no-ops.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kernel_builder import settings

REPO = Path(__file__).resolve().parent.parent
KERNELS_SRC = REPO / "kernels_src"
SHARED = REPO.parent / "shared"
CONFORMANCE = SHARED / "conformance" / "conformance.py"


def run_cli(*args, env=None, check=True, cwd=None) -> subprocess.CompletedProcess:
    e = dict(os.environ)
    e.update(env or {})
    r = subprocess.run([sys.executable, "-m", "kernel_builder", *map(str, args)], capture_output=True, text=True,
                       env=e, cwd=cwd, timeout=1800)
    if check and r.returncode != 0:
        raise AssertionError(f"kernel-builder {' '.join(map(str, args))} exited {r.returncode}:\n{r.stdout}\n{r.stderr}")
    return r


def build_project(project: Path, out: Path, *extra, env=None) -> subprocess.CompletedProcess:
    return run_cli("build", project, "--out", out, *extra, env=env)


@pytest.fixture(scope="session")
def built_kernels(tmp_path_factory) -> dict[str, Path]:
    """kernels_src/{activation,rmsnorm} built for this host: name -> directory of variant directories."""
    out = tmp_path_factory.mktemp("kernels_src_build")
    result = {}
    for name in ("activation", "rmsnorm"):
        build_project(KERNELS_SRC / name, out / name)
        result[name] = out / name
    return result


@pytest.fixture
def conformance():
    if not CONFORMANCE.is_file():
        pytest.skip(f"conformance harness not found at {CONFORMANCE} (CI clones ../shared beside the repo; "
                    "a checkout of the project alone has no harness)")
    return CONFORMANCE


@pytest.fixture
def tiny_project(tmp_path) -> Path:
    """A copy of the smallest real project (tests/projects/hf_docs_style) that a test may edit."""
    dst = tmp_path / "proj"
    shutil.copytree(REPO / "tests" / "projects" / "hf_docs_style", dst)
    return dst


@pytest.fixture(autouse=True)
def fresh_settings():
    """kernel-builder reads the environment once per process (settings.py); each test starts from the
    environment as it is, and a test that changes it calls settings.reload() itself."""
    settings.reload()
    yield


@pytest.fixture
def private_cache(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("KERNEL_BUILDER_CACHE", str(cache))
    settings.reload()
    return cache


# --- CI: a suite that skips is a suite that did not run ------------------------------------------------
# .ci/run sets KB_CI_FORBID_SKIPS=1: on CI every suite (containers, CUDA compile, NPU binding, conformance,
# the hub, the scripts) must run, so a skip (a missing docker, nvcc, .venv-npu, kernels package) fails the
# session with the list of what skipped and why, instead of a green run that tested less.
_SKIPPED: list[str] = []


def pytest_runtest_logreport(report):
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _SKIPPED.append(f"{report.nodeid}: {reason}")


def pytest_sessionfinish(session, exitstatus):
    if os.environ.get("KB_CI_FORBID_SKIPS") == "1" and _SKIPPED and exitstatus == 0:
        print(f"\nKB_CI_FORBID_SKIPS: {len(_SKIPPED)} test(s) skipped on CI, where every suite must run:",
              *_SKIPPED[:20], sep="\n  ")
        session.exitstatus = 1
