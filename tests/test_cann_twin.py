"""The cann backend's CPU twin (`build --cann-twin --soc SOC`): Ascend C kernels compiled against Huawei's
open Ascend C API with the host compiler, run on CPU tensors through the real `kernels` loader.

The API sources are read from ../shared/ascend (KERNEL_BUILDER_ASCEND_SRC), as CI has them; the kernel
tests that run in the twin are kernels_src's own NPU tests (the same cases a real NPU would run).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kernel_builder import settings
from kernel_builder.backends.cann_twin import Param, scan_entries, twin_group
from kernel_builder.errors import UsageError

from conftest import KERNELS_SRC, SHARED, run_cli

ASCEND = SHARED / "ascend"
needs_ascend = pytest.mark.skipif(not (ASCEND / "asc-devkit").is_dir(), reason=(
    f"Huawei's open Ascend C sources are not at {ASCEND} (CI has them beside the repo; elsewhere clone "
    "hicann/asc-devkit, hicann/asc-tools and libboundscheck there)"))
NPU_TESTS = {"rmsnorm": KERNELS_SRC / "rmsnorm" / "tests" / "test_rmsnorm_npu.py",
             "activation": KERNELS_SRC / "activation" / "tests" / "test_activation_npu.py"}


# --- planning: entry points, SoCs, options ------------------------------------------------------------


def test_entry_points_are_read_from_the_preprocessed_source():
    text = ('namespace { void helper(int a) {} }\n'
            'extern "C" __kb_twin_entry__ void kb_add(uint8_t * x, uint8_t* y, uint32_t n, float alpha) { run(); }\n'
            'extern "C" __kb_twin_entry__ void kb_empty(uint8_t * x) {}\n'
            'extern "C" void not_a_kernel(uint8_t* x) {}\n')
    entries = scan_entries(text, Path("k.cpp"))
    assert [e.name for e in entries] == ["kb_add", "kb_empty"]
    assert entries[0].params == (Param("uint8_t *", "x"), Param("uint8_t *", "y"), Param("uint32_t", "n"),
                                 Param("float", "alpha"))
    assert [p.host_type for p in entries[0].params] == ["void*", "void*", "uint32_t", "float"]


def test_an_entry_point_taking_a_struct_is_refused_by_name():
    from kernel_builder.errors import CompileError

    with pytest.raises(CompileError, match="kb_tiled: parameter t of type 'Tiling'"):
        scan_entries('extern "C" __kb_twin_entry__ void kb_tiled(uint8_t * x, Tiling t) {}', Path("k.cpp"))


@pytest.mark.parametrize("socs, message", [
    ((), "name the SoC the twin stands for with --soc"),
    (("Ascend910B1", "Ascend310P3"), "one arch group per twin build, got 2"),
    (("Ascend999",), "unknown Ascend SoC 'Ascend999'"),
    (("Ascend310B1",), "arch group m300 has no twin"),
])
def test_twin_socs_are_one_known_arch_group(socs, message):
    with pytest.raises(UsageError, match=message):
        twin_group(socs)


def test_twin_group_of_each_modelled_soc():
    assert twin_group(("Ascend910B1", "Ascend910B3")) == "c220"
    assert twin_group(("Ascend310P3",)) == "m200"


def _one_line(r, code: int, *needles: str) -> None:
    lines = r.stderr.strip().splitlines()
    assert r.returncode == code, (r.stdout, r.stderr)
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_without_api_sources_a_twin_build_is_one_line_exit_3(tmp_path):
    env = {k: "" for k in ("KERNEL_BUILDER_ASCEND_SRC", "ASCEND_HOME_PATH", "ASCEND_TOOLKIT_HOME")}
    r = run_cli("build", KERNELS_SRC / "rmsnorm", "--cann-twin", "--soc", "Ascend910B1", "--out", tmp_path / "out",
                env=env, check=False)
    _one_line(r, 3, "KERNEL_BUILDER_ASCEND_SRC", "asc-devkit")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, message", [
    (["--soc", "Ascend910B1"], "--soc: only a twin build (--cann-twin)"),
    (["--cann-twin", "--soc", "Ascend910B1", "--soc", "Ascend310P3"], "one arch group per twin build"),
    (["--cann-twin", "--all", "--soc", "Ascend910B1"], "does not combine with --all"),
])
def test_bad_twin_options_are_usage_errors(tmp_path, args, message):
    r = run_cli("build", KERNELS_SRC / "rmsnorm", *args, "--out", tmp_path / "out",
                env={"KERNEL_BUILDER_ASCEND_SRC": str(ASCEND)}, check=False)
    _one_line(r, 2, message)
    assert not (tmp_path / "out").exists()


def test_a_project_without_cann_kernels_has_no_twin(tmp_path, tiny_project):
    r = run_cli("build", tiny_project, "--cann-twin", "--soc", "Ascend910B1", "--out", tmp_path / "out",
                env={"KERNEL_BUILDER_ASCEND_SRC": str(ASCEND)}, check=False)
    _one_line(r, 2, "general.backends does not name 'cann'")


def test_an_incomplete_api_folder_is_named(tmp_path, monkeypatch):
    from kernel_builder.backends.cann_twin import find_api_source
    from kernel_builder.errors import EnvironmentProblem

    (tmp_path / "asc-devkit").mkdir()
    monkeypatch.setenv("KERNEL_BUILDER_ASCEND_SRC", str(tmp_path))
    settings.reload()
    with pytest.raises(EnvironmentProblem, match="asc-devkit/include/kernel_operator.h not found"):
        find_api_source()


# --- building and running ------------------------------------------------------------------------------


def twin_build(project: Path, out: Path, soc: str, cache: Path):
    return run_cli("build", project, "--cann-twin", "--soc", soc, "--out", out,
                   env={"KERNEL_BUILDER_ASCEND_SRC": str(ASCEND), "KERNEL_BUILDER_CACHE": str(cache)})


class TwinTrees(dict):
    """A kernels_src project built as a twin of a SoC on first use: (project, soc) -> build dir; one cache."""

    def __init__(self, base: Path):
        super().__init__()
        self.base = base
        self.cache = base / "cache"

    def __missing__(self, key: tuple[str, str]) -> Path:
        project, soc = key
        out = self.base / project / soc / "build"
        print(twin_build(KERNELS_SRC / project, out, soc, self.cache).stdout)
        self[key] = out
        return out


@pytest.fixture(scope="module")
def twin_trees(tmp_path_factory) -> TwinTrees:
    if not (ASCEND / "asc-devkit").is_dir():
        pytest.skip(f"no Ascend C sources at {ASCEND}")
    return TwinTrees(tmp_path_factory.mktemp("twin"))


def run_kernel_tests(tree: Path, test_file: Path) -> subprocess.CompletedProcess:
    """The kernel's own NPU tests, against `tree`, in a fresh interpreter (as a user runs them)."""
    env = dict(os.environ, KERNEL_BUILD_DIR=str(tree), PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfs", str(test_file)],
                          capture_output=True, text=True, env=env, cwd=test_file.parent.parent, timeout=900)


def _variant(tree: Path) -> Path:
    (variant,) = [p for p in tree.iterdir() if p.is_dir()]
    return variant


@needs_ascend
@pytest.mark.parametrize("soc, group", [("Ascend910B1", "c220"), ("Ascend310P3", "m200")])
def test_twin_tree_is_a_cpu_variant_that_says_it_is_a_twin(twin_trees, soc, group):
    variant = _variant(twin_trees["rmsnorm", soc])
    assert variant.name.endswith("-cpu-x86_64-linux") or variant.name.endswith("-cpu-aarch64-linux")
    meta = json.loads((variant / "metadata.json").read_text())
    assert meta["backend"] == {"type": "cpu"}
    twin = meta["provenance"]["twin"]
    assert twin["soc"] == soc and twin["arch-group"] == group and twin["backend"] == "cann"
    assert twin["api-source"] == str(ASCEND.resolve()) and twin["api-version"].count(".") == 2


@needs_ascend
@pytest.mark.parametrize("soc", ["Ascend910B1", "Ascend310P3"])
@pytest.mark.parametrize("project", ["rmsnorm", "activation"])
def test_the_kernels_npu_tests_pass_in_the_twin(twin_trees, project, soc):
    """Every cann op of kernels_src, on both twin arch groups, held by the kernel's own NPU tests."""
    r = run_kernel_tests(twin_trees[project, soc], NPU_TESTS[project])
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    passed = int(r.stdout.strip().splitlines()[-1].split(" passed")[0].split()[-1])
    assert passed >= 25, r.stdout[-2000:]
    # by design, not for want of anything: the other arch group's refusals and the CPU-tensor refusal
    for line in (ln for ln in r.stdout.splitlines() if ln.startswith("SKIPPED")):
        assert any(why in line for why in ("only:", "NPU's tensors are CPU tensors", "whole 32-byte blocks")), line


@needs_ascend
def test_check_fails_a_twin_tree_unless_allowed(twin_trees):
    tree = twin_trees["rmsnorm", "Ascend910B1"]
    r = run_cli("check", tree, check=False)
    assert r.returncode == 5 and "twin build: not publishable" in r.stdout + r.stderr, r.stdout + r.stderr
    # import check included (it loads on this torch); --no-abi: a twin is built for this machine, never shipped,
    # and the CPU debug library it links needs a newer glibc than manylinux_2_28
    assert run_cli("check", tree, "--allow-twin", "--no-abi").returncode == 0


@needs_ascend
def test_upload_refuses_a_twin_tree_before_any_network_call(twin_trees):
    # port 9 (discard) on loopback: a network call would be exit 7, not the refusal
    r = run_cli("upload", twin_trees["rmsnorm", "Ascend910B1"], "--repo-id", "me/rmsnorm", "--endpoint", "http://127.0.0.1:9",
                env={"HF_TOKEN": "hf_test"}, check=False)
    _one_line(r, 2, "a twin build (--cann-twin) is for testing and is never uploaded")


@needs_ascend
def test_the_twin_catches_an_indexing_bug(tmp_path, twin_trees):
    """A kernel that reads row r of x at r * out_stride (a plausible slip) passes every contiguous case and
    must fail the strided ones: the twin runs the kernel's real indexing."""
    project = tmp_path / "rmsnorm"
    shutil.copytree(KERNELS_SRC / "rmsnorm", project, ignore=shutil.ignore_patterns("build", "__pycache__"))
    src = project / "rmsnorm_cann" / "rmsnorm_kernel.cpp"
    good = "x_gm_[static_cast<uint64_t>(row) * x_stride_]"
    assert good in src.read_text()
    src.write_text(src.read_text().replace(good, "x_gm_[static_cast<uint64_t>(row) * out_stride_]"))
    twin_build(project, tmp_path / "out" / "build", "Ascend910B1", twin_trees.cache)
    r = run_kernel_tests(tmp_path / "out" / "build", project / "tests" / "test_rmsnorm_npu.py")
    assert r.returncode == 1, r.stdout[-3000:]
    failed = [ln for ln in r.stdout.splitlines() if ln.startswith("FAILED")]
    assert failed and all("test_strided_rows" in ln for ln in failed), r.stdout[-3000:]


@needs_ascend
def test_a_twin_never_replaces_a_real_cpu_build(tmp_path, built_kernels):
    """A twin is named like this torch's CPU variant: building one where a real CPU build lives is refused."""
    out = tmp_path / "build"
    shutil.copytree(built_kernels["rmsnorm"], out)
    before = sorted(p.name for p in out.iterdir())
    r = run_cli("build", KERNELS_SRC / "rmsnorm", "--cann-twin", "--soc", "Ascend910B1", "--out", out,
                env={"KERNEL_BUILDER_ASCEND_SRC": str(ASCEND)}, check=False)
    _one_line(r, 2, "holds a real", "a twin build would replace")
    assert sorted(p.name for p in out.iterdir()) == before
