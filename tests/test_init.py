"""`kernel-builder init` scaffolds a project that builds and passes its own tests."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import build_project, run_cli


def test_init_builds_and_its_tests_pass(tmp_path, private_cache):
    proj = tmp_path / "my-scale"
    r = run_cli("init", "my-scale", "--dir", proj, "--backends", "cpu", "cuda")
    assert "created" in r.stdout
    assert (proj / "build.toml").is_file() and (proj / "my_scale_cuda" / "my_scale.cu").is_file()
    build_project(proj, proj / "build")
    run_cli("check", proj / "build")
    env = dict(os.environ, KERNEL_BUILD_DIR=str(proj / "build"))
    t = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(proj / "tests")],
                       capture_output=True, text=True, env=env, cwd=proj)
    assert t.returncode == 0 and " passed" in t.stdout and "skipped" not in t.stdout, t.stdout[-3000:]


def test_init_refuses_bad_name_and_non_empty_dir(tmp_path):
    r = run_cli("init", "Bad_Name", "--dir", tmp_path / "x", check=False)
    assert r.returncode == 2 and "Bad_Name" in r.stderr
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    r = run_cli("init", "ok-name", "--dir", tmp_path / "full", check=False)
    assert r.returncode == 2 and (tmp_path / "full" / "keep.txt").read_text() == "mine"
