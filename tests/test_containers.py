"""`build --all` for real: dockerd, a Debian base image made by scripts/make_base_image.sh, a toolchain
image built from the top-level Dockerfile with this machine's torch 2.13.0+cpu wheel (served from the
host's pip configuration), kernels_src built inside a container, then `check` and the conformance
harness on the result. Failures: one variant failing with --keep-going leaves the others built and no
partial directory; without it the rest is cancelled."""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from conftest import KERNELS_SRC, REPO, run_cli

BASE = "local/debian:bookworm"
CPU213 = "torch213-cxx11-cpu-x86_64-linux"


def _docker() -> str:
    for cand in ("/usr/bin/docker", shutil.which("docker")):
        if cand and Path(cand).exists():
            r = subprocess.run([cand, "info"], capture_output=True, text=True)
            if r.returncode == 0:
                return cand
    pytest.skip("no running docker daemon (.ci/run installs docker.io and starts dockerd; "
                "here: apt-get install -y docker.io debootstrap && dockerd &)")


@pytest.fixture(scope="module")
def base_image() -> str:
    docker = _docker()
    r = subprocess.run(["bash", str(REPO / "scripts" / "make_base_image.sh"), "bookworm", BASE], capture_output=True,
                       text=True, env=dict(os.environ, ENGINE=docker), timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    return BASE


def _all(project, out, *extra, env=None, check=False):
    return run_cli("build", project, "--all", "--base-image", BASE, "--out", out, *extra, env=env, check=check)


def test_cpu_variant_built_in_a_container_passes_check_and_conformance(base_image, tmp_path, conformance):
    out = tmp_path / "build"
    project = tmp_path / "rmsnorm"  # a snapshot: the up-to-date check below must not see edits in progress
    shutil.copytree(KERNELS_SRC / "rmsnorm", project, ignore=shutil.ignore_patterns("build", "__pycache__"))
    r = _all(project, out, "--variant", "torch213-*")
    assert r.returncode == 0, r.stdout + r.stderr
    assert [p.name for p in out.iterdir()] == [CPU213]
    assert f"{CPU213}  torch213-cpu" in r.stdout and "1 built" in r.stdout
    so = next((out / CPU213).glob("*.abi3.so"))
    assert so.stat().st_uid == os.getuid()  # never root-owned output
    meta = (out / CPU213 / "metadata.json").read_text()
    assert '"image": "kernel-builder/torch213-cpu:' in meta  # provenance names the environment
    run_cli("check", out)  # layout, digest, abi3, manylinux_2_28, import with this host's torch 2.13
    # the judge, in full: loader, LOCAL_KERNELS, kernelize with the RMSNorm layer, transformers
    c = subprocess.run([os.sys.executable, str(conformance), str(out)], capture_output=True, text=True, timeout=900)
    assert c.returncode == 0, c.stdout[-3000:] + c.stderr[-2000:]
    # nothing changed: no container is started, the variant is reported up to date
    again = _all(project, out, "--variant", "torch213-*")
    assert again.returncode == 0 and "1 up to date" in again.stdout
    assert [p.name for p in out.iterdir()] == [CPU213]


def _matrix(tmp_path: Path) -> Path:
    """Two environments: torch 2.12.1 whose image cannot be made (a pin that does not exist; pip fails
    while resolving, before any download) and the working torch 2.13.0 one."""
    f = tmp_path / "matrix.toml"
    f.write_text(textwrap.dedent("""\
        default-base = "local/debian:bookworm"

        [image.torch212-broken]
        python = "3.11"
        pip = ["torch==2.12.1", "kb-test-no-such-package==0.0.1"]

        [image.torch213-cpu]
        python = "3.11"
        pip = ["torch==2.13.0"]

        [[env]]
        torch = "2.12.1"
        backend = "cpu"
        image = "torch212-broken"
        arch = "x86_64"
        os = "linux"

        [[env]]
        torch = "2.13.0"
        backend = "cpu"
        image = "torch213-cpu"
        arch = "x86_64"
        os = "linux"
        """))
    return f


def test_keep_going_builds_the_others_and_leaves_no_partial_directory(base_image, tmp_path):
    m = _matrix(tmp_path)
    out = tmp_path / "build"
    r = _all(KERNELS_SRC / "activation", out, "--matrix", m, "--keep-going", "-j", "1")
    assert r.returncode == 3, r.stdout + r.stderr  # the first failure's class: its image cannot be made
    assert "1 built" in r.stdout and "1 failed" in r.stdout
    assert "kb-test-no-such-package" in r.stdout  # the failed variant's line says why
    assert sorted(p.name for p in out.iterdir()) == [CPU213]  # no partial or staging directory
    log = next(ln for ln in r.stdout.splitlines() if ln.startswith("torch212-cxx11-cpu")).split()[-1]
    assert Path(log).is_file() and "kb-test-no-such-package" in Path(log).read_text()


def test_without_keep_going_the_rest_is_cancelled(base_image, tmp_path):
    m = _matrix(tmp_path)
    out = tmp_path / "build"
    r = _all(KERNELS_SRC / "activation", out, "--matrix", m, "-j", "1")
    assert r.returncode == 3
    assert "1 failed, 1 cancelled" in r.stdout
    assert not out.exists() or not any(out.iterdir())


def test_a_compile_error_fails_that_variant_cleanly(base_image, tmp_path, tiny_project):
    src = next(p for p in tiny_project.rglob("*.cpp") if "torch-ext" not in p.parts)
    src.write_text(src.read_text() + "\nthis is not C++;\n")
    out = tmp_path / "build"
    out.mkdir()
    (out / "keep.txt").write_text("not ours")
    logs = tmp_path / "logs"
    r = _all(tiny_project, out, "--variant", "torch213-*", "--log-dir", logs)
    assert "this is not C++" in (logs / f"{CPU213}.log").read_text()  # the compiler's own output, kept
    assert r.returncode == 4, r.stdout + r.stderr
    failed = next(ln for ln in r.stdout.splitlines() if ln.startswith("failed:"))
    assert "compile failed" in failed and "error" in failed and "log:" in failed
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]  # nothing half-written, nothing deleted


def test_images_list_shows_the_image_the_build_used(base_image, tmp_path):
    r = run_cli("images", "list", "--base-image", BASE)
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("torch213-cpu "))
    assert "current" in line and "kernel-builder/torch213-cpu:" in line


def test_missing_base_image_is_one_line_with_the_fix(tmp_path):
    _docker()
    args = ["build", KERNELS_SRC / "activation", "--all", "--variant", "torch213-*", "--out", tmp_path / "o",
            "--base-image", "local/kb-test-no-such-base:1"]
    for extra in ([], ["--keep-going"]):  # a row this host cannot build is never attempted, even with --keep-going
        r = run_cli(*args, *extra, check=False)
        assert r.returncode == 3 and r.stdout == "", r.stdout + r.stderr  # before anything is built: one line
        assert r.stderr.count("\n") == 1
        assert "torch213-cxx11-cpu-x86_64-linux: not buildable on this host" in r.stderr
        assert "base image local/kb-test-no-such-base:1 (not made yet" in r.stderr and "make_base_image.sh" in r.stderr
    lv = run_cli("list-variants", KERNELS_SRC / "activation", "--all", "--base-image", "local/kb-test-no-such-base:1")
    row = next(ln for ln in lv.stdout.splitlines() if " torch213-cxx11-cpu-x86_64-linux " in ln)
    assert row.startswith("elsewhere ") and "local/kb-test-no-such-base:1 (not made yet" in row
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_cann_variants_without_the_cann_image_say_which_and_how(tmp_path):
    _docker()
    out = tmp_path / "o"
    r = run_cli("build", KERNELS_SRC / "rmsnorm", "--all", "--variant", "*cann*", "--out", out, check=False)
    assert r.returncode == 3, r.stdout + r.stderr
    assert r.stdout == "" and r.stderr.count("\n") == 1  # one line, before anything is built
    assert "quay.io/ascend/cann:" in r.stderr
    # where quay.io does not answer the line says so; where it does, the pull's own failure
    assert "not reachable from here" in r.stderr or "is neither local nor pullable" in r.stderr
    assert "save" in r.stderr and "load" in r.stderr
    assert not out.exists()


def test_prune_removes_stale_images_only(base_image):
    docker = _docker()
    ref = "kernel-builder/kbtest-prune:0123456789ab"  # made by kernel-builder (label) from inputs no matrix has
    r = subprocess.run([docker, "build", "-q", "-t", ref, "--label", "org.kernel-builder.image=kbtest-prune", "-"],
                       input=f"FROM {BASE}\n", capture_output=True, text=True, env=dict(os.environ, DOCKER_BUILDKIT="1"))
    assert r.returncode == 0, r.stderr
    listed = run_cli("images", "list").stdout
    assert any(ln.startswith("kbtest-prune ") and "stale" in ln for ln in listed.splitlines())
    out = run_cli("images", "prune", "--image", "kbtest-prune").stdout
    assert f"removed {ref}" in out and "1 image(s) removed" in out
    assert subprocess.run([docker, "image", "inspect", ref], capture_output=True).returncode != 0
    assert subprocess.run([docker, "image", "inspect", BASE], capture_output=True).returncode == 0  # not ours
