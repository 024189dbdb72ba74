"""Hugging Face's compiler flags and bindings, checked on real builds (issue 14, items 2, 4 and 5).

A kernel written for Hugging Face's builder (torch's CMake package) must build here unchanged: an extended
`__device__` lambda, `__half` operators, FP8 under ENABLE_FP8, and a project whose own registration.h
defines the module's PyInit. The flags are read from the `build.ninja` cpp_extension wrote, and README's
flags table is held to that file row by row.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

from kernel_builder.build.host import Host
from kernel_builder.build.plan import make_plan, select
from kernel_builder.project.config import load_project
from kernel_builder.project.options import BuildOptions

PROJECTS = REPO / "tests" / "projects"
CUDA_PYTHON = Path(os.environ.get("KB_CUDA_PYTHON", REPO / ".venv-cu" / "bin" / "python"))
HALF_DEFINES = ("__CUDA_NO_HALF_OPERATORS__", "__CUDA_NO_HALF_CONVERSIONS__", "__CUDA_NO_BFLOAT16_CONVERSIONS__",
                "__CUDA_NO_HALF2_OPERATORS__")


def _build(python: Path, name: str, tmp: Path, *extra: str) -> tuple[Path, Path]:
    """Builds tests/projects/NAME (a copy); returns (the variant directory, the cache holding its ninja files)."""
    project = tmp / name
    shutil.copytree(PROJECTS / name, project)
    env = dict(os.environ, KERNEL_BUILDER_CACHE=str(tmp / "cache"))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "builder"), env.get("PYTHONPATH")]))
    r = subprocess.run([str(python), "-m", "kernel_builder", "build", str(project), "--out", str(tmp / "out"), *extra],
                       capture_output=True, text=True, env=env, cwd=tmp, timeout=3000)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stdout[-3000:] + r.stderr[-3000:]
    (variant,) = [d for d in (tmp / "out").iterdir() if d.is_dir()]
    return variant, tmp / "cache"


def _ninja_vars(cache: Path) -> list[dict[str, list[str]]]:
    """The variables of every build.ninja of the build, each split as the shell would."""
    out = []
    for f in sorted(cache.rglob("build.ninja")):
        pairs = re.findall(r"^(\w+) = (.*)$", f.read_text(), re.M)
        out.append({k: shlex.split(v) for k, v in pairs})
    assert out, f"no build.ninja under {cache}"
    return out


def _readme_flags() -> list[tuple[str, bool, bool]]:
    """README's flags table: (flag, given to g++, given to nvcc)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("### Compiler flags", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([^`]+)`(?: / `([^`]+)`)? \|\s*(yes|)\s*\|\s*(yes[^|]*|)\s*\|", section, re.M)
    assert len(rows) >= 8, section
    return [(flag, bool(cxx), bool(nvcc)) for first, second, cxx, nvcc in rows for flag in filter(None, (first, second))]


def _has(flags: list[str], flag: str) -> bool:
    if flag == "-gencode=...":
        return any(f.startswith("-gencode=") for f in flags)
    return flag in flags


def test_cxx_standard_follows_torch_in_the_plan(tmp_path):
    """C++17 below torch 2.12, C++20 from it (no torch 2.11 here: the plan of a described host), unless the
    kernel's flags name a standard themselves."""
    project = load_project(PROJECTS / "own_pyinit")
    for torch, std in (("2.11.0", "-std=c++17"), ("2.12.1", "-std=c++20"), ("2.14.1", "-std=c++20")):
        host = Host(python=sys.executable, torch_version=torch, cxx11_abi=True, torch_cuda=None, nvcc=None,
                    nvcc_version=None, cuda_home=None, arch="x86_64", os="linux", probed=False)
        (sel,) = select(project, host, BuildOptions())
        plan = make_plan(project, sel, host, BuildOptions())
        assert all(g["cxx"].count(std) == 1 and g["cxx"][0] == std for g in plan.groups), plan.groups


def test_own_registration_pyinit_is_the_one_linked(tmp_path):
    """The project's REGISTER_EXTENSION defines PyInit_<id>; ours is weak, so the build links and the module
    Python gets is the project's (its docstring says so); the real loader loads the variant."""
    variant, cache = _build(Path(sys.executable), "own_pyinit", tmp_path)
    meta = json.loads((variant / "metadata.json").read_text())
    so = variant / f"{meta['id']}.abi3.so"
    probe = ("import importlib.util, sys, torch\n"
             "spec = importlib.util.spec_from_file_location(sys.argv[2], sys.argv[1])\n"
             "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); print(m.__doc__)\n"
             "import kernels\n"
             "k = kernels.get_local_kernel(__import__('pathlib').Path(sys.argv[3]))\n"
             "print(k.scale(torch.arange(3.0), 2.0).tolist())\n")
    r = subprocess.run([sys.executable, "-c", probe, str(so), meta["id"], str(variant.parent)],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.splitlines() == ["own-pyinit: module made by the project's REGISTER_EXTENSION", "[0.0, 2.0, 4.0]"]
    # C++ flags of a real CPU build (torch 2.13 here: C++20), the table's g++ column
    flags = [f for v in _ninja_vars(cache) for f in v.get("post_cflags", [])]
    for flag, cxx, _ in _readme_flags():
        if cxx and not flag.startswith("-std=c++17"):
            assert _has(flags, flag), (flag, flags)


@pytest.fixture(scope="module")
def cuda_build(tmp_path_factory):
    if not CUDA_PYTHON.exists():
        pytest.skip(f"no CUDA build of torch at {CUDA_PYTHON} (bash scripts/setup.sh --cuda makes one)")
    if not (shutil.which("nvcc") or os.environ.get("CUDA_HOME")):
        pytest.skip("nvcc not found and CUDA_HOME unset: the CUDA compat project cannot be compiled here")
    return _build(CUDA_PYTHON, "hf_cuda_compat", tmp_path_factory.mktemp("cuda"), "--cuda-archs", "9.0")


def test_cuda_compat_project_builds_with_hf_flags(cuda_build):
    """The flags nvcc got are README's table, none of the half defines, and the kernel's own flag last."""
    variant, cache = cuda_build
    nvcc = [v for v in _ninja_vars(cache) if "cuda_post_cflags" in v]
    assert len(nvcc) == 1, nvcc
    flags = nvcc[0]["cuda_cflags"] + nvcc[0]["cuda_post_cflags"]
    assert not [f for f in flags if any(d in f for d in HALF_DEFINES)], flags
    for flag, _, gpu in _readme_flags():
        if gpu and flag != "-std=c++17":
            assert _has(flags, flag), (flag, flags)
    ours = [i for i, f in enumerate(flags) if f in ("-O3", "-DNDEBUG", "--expt-extended-lambda", "-DENABLE_FP8")
            or f.startswith(("-gencode=", "-std="))]
    assert flags.index("-DKB_COMPAT_KERNEL_FLAG") > max(ours), flags
    c = subprocess.run([str(CUDA_PYTHON), "-m", "kernel_builder", "check", str(variant.parent)], capture_output=True,
                       text=True, timeout=600, env=dict(os.environ, PYTHONPATH=str(REPO / "builder")))
    assert c.returncode == 0 and "import check skipped" not in c.stdout, c.stdout[-3000:] + c.stderr[-2000:]


def test_cuda_compat_facts_seen_by_the_compiler(cuda_build):
    """What the .cu translation unit was compiled with, asked from the loaded library (host code: no GPU)."""
    variant, _ = cuda_build
    meta = json.loads((variant / "metadata.json").read_text())
    probe = ("import sys, torch\n"
             "torch.ops.load_library(sys.argv[1])\n"
             "print(getattr(torch.ops, sys.argv[2]).build_facts())\n")
    r = subprocess.run([str(CUDA_PYTHON), "-c", probe, str(variant / f"{meta['id']}.abi3.so"), meta["id"]],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    facts = int(r.stdout.strip())
    fp8, ndebug, cxx20, no_half, kernel_flag = 1, 2, 4, 8, 16
    assert facts & fp8 and facts & ndebug and facts & cxx20 and facts & kernel_flag, facts
    assert not facts & no_half, facts
