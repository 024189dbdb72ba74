"""The judge: ../shared/conformance on our built kernels_src trees, with the real kernels loader,
transformers, a hub on 127.0.0.1 and two builds of different sources in one process."""

from __future__ import annotations

import shutil
import subprocess
import sys

from conftest import KERNELS_SRC, build_project


def _run(conformance, *args):
    r = subprocess.run([sys.executable, str(conformance), *map(str, args)], capture_output=True, text=True,
                       timeout=1200)
    last = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    assert r.returncode == 0 and last.endswith(" 0 failed"), r.stdout[-4000:] + r.stderr[-2000:]
    return r.stdout


def test_rmsnorm_conformance_with_hub_and_a_second_build(built_kernels, conformance, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(built_kernels["rmsnorm"], repo / "build")
    # a second build from different sources (a changed kernel source): new id, new op namespace
    other = tmp_path / "rmsnorm-b"
    shutil.copytree(KERNELS_SRC / "rmsnorm", other, ignore=shutil.ignore_patterns("build", "__pycache__"))
    src = next((other / "rmsnorm_cpu").glob("*.cpp"))
    src.write_text(src.read_text() + "\n// second build, different sources\n")
    build_project(other, tmp_path / "b")
    out = _run(conformance, repo, "--hub", "--tree-b", tmp_path / "b", "--repo-id", "kernel-builder/rmsnorm",
               "--layer", "RMSNorm")
    assert "[PASS] multi_version" in out and "[PASS] hub" in out and "[PASS] tf_kernelize" in out


def test_activation_conformance_with_hub(built_kernels, conformance, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(built_kernels["activation"], repo / "build")
    out = _run(conformance, repo, "--hub", "--no-layer", "--repo-id", "kernel-builder/activation")
    assert "[PASS] hub" in out and "[PASS] local_kernels_env" in out


def test_abi_of_everything_we_built(built_kernels, conformance):
    for tree in built_kernels.values():
        r = subprocess.run([sys.executable, str(conformance.parent / "abi_check.py"), str(tree)],
                           capture_output=True, text=True)
        assert r.returncode == 0 and "No compatibility issues found" in r.stdout, r.stdout
