"""A source edited while it is being built: the build fails with one line naming the file, installs nothing
and stamps nothing, so the next build compiles the edited bytes instead of reusing a library whose fingerprint
names other bytes. The edit is made for real, mid-build, by the C++ compiler wrapper ($CXX) on its first call."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from conftest import run_cli


def _editing_compiler(tmp_path: Path, victim: Path) -> Path:
    real = shutil.which(os.environ.get("CXX") or "c++") or shutil.which("g++")
    if real is None:
        pytest.skip("no C++ compiler on PATH")
    marker = tmp_path / "edited"
    wrapper = tmp_path / "cxx-that-edits"
    wrapper.write_text("#!/bin/sh\n"
                       f"if [ ! -e '{marker}' ]; then : > '{marker}'; "
                       f"printf '\\n// edited mid-build\\n' >> '{victim}'; fi\n"
                       f"exec '{real}' \"$@\"\n")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return wrapper


def test_source_edited_mid_build_fails_and_installs_nothing(tiny_project, tmp_path, private_cache):
    victim = tiny_project / "relu_cpu" / "relu.cpp"
    env = {"CXX": str(_editing_compiler(tmp_path, victim))}
    out = tmp_path / "out"
    r = run_cli("build", tiny_project, "--out", out, env=env, check=False)
    assert r.returncode == 4, (r.returncode, r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "relu_cpu/relu.cpp" in lines[0] and "changed during the build" in lines[0], r.stderr
    assert "edited mid-build" in victim.read_text()
    assert not any(out.glob("*/metadata.json")), sorted(p.name for p in out.rglob("*"))
    assert not list(private_cache.rglob("stamp.json")), "a library of the pre-edit plan was stamped"
    # the next build (the wrapper edits no more) compiles the edited bytes and installs them
    r2 = run_cli("build", tiny_project, "--out", out, env=env)
    assert r2.returncode == 0
    assert len(list(out.glob("*/metadata.json"))) == 1
