"""The cann build path without CANN: what can be exercised here, and nothing more.

- Without a toolkit, `build` / `list-variants` skip cann with one clear reason and build the rest.
- Flow probing on fake toolkit trees (ascendc.cmake vs ASC's package config).
- kernels_src/rmsnorm's cann kernel: its golden CMake for both flows and both arch groups, and its host-side
  binding compiled + linked against the PyPI torch-npu 2.13.0 wheel with torch 2.13.0+cpu (.venv-npu).
- The whole `kernel-builder build` of kernels_src/rmsnorm's cann variant through the real CLI (run by .venv-npu's
  Python) against a FAKE CANN toolkit: an install.info, a stand-in ascendc.cmake whose ascendc_library compiles a
  C++ stub of the six aclrtlaunch_* functions instead of the Ascend C kernel, and an empty libascendcl.so.
  This proves the wiring (probe, per-arch-group configure + build, link, variant tree, metadata, provenance);
  it proves nothing about the Ascend C kernel, which has never been compiled.
- The import-time arch-group dispatch (the generated cann _ops.py + sonames) with tiny C libraries.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kernel_builder import settings
from kernel_builder.backends import cann as cann_backend
from kernel_builder.project.config import load_project
from kernel_builder.errors import EnvironmentProblem, UsageError
from kernel_builder.build.render import render
from test_cann import STUB_ASCENDC_HELPERS

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RMSNORM = REPO / "kernels_src" / "rmsnorm"
GOLDEN = HERE / "golden" / "cann"
NPU_VENV = Path(os.environ.get("KB_NPU_VENV", REPO / ".venv-npu"))
NPU_PY = NPU_VENV / "bin" / "python"
NO_NPU_VENV = f"no {NPU_VENV}: bash scripts/setup.sh --npu makes it (torch 2.13.0+cpu + torch-npu 2.13.0)"


def _clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("ASCEND_HOME_PATH", "ASCEND_TOOLKIT_HOME",
                                                            cann_backend.FLOW_ENV)}
    env.update(extra)
    return env


# --------------------------------------------------------------------------------------------------
# No toolkit: a clear skip
# --------------------------------------------------------------------------------------------------

def test_list_variants_without_cann_says_why(tmp_path, monkeypatch):
    if Path(cann_backend.DEFAULT_ASCEND_HOME).is_dir():
        pytest.skip(f"a CANN toolkit is installed at {cann_backend.DEFAULT_ASCEND_HOME}")
    env = _clean_env(KERNEL_BUILDER_CACHE=str(tmp_path / "cache"))
    r = subprocess.run([sys.executable, "-m", "kernel_builder", "list-variants", str(RMSNORM)], capture_output=True,
                       text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "skip   cann: CANN toolkit not found (ASCEND_HOME_PATH unset; source <cann>/set_env.sh)" in r.stdout
    assert "not built by this kernel-builder yet" not in r.stdout + r.stderr


def test_unavailable_reasons(tmp_path, monkeypatch):
    from kernel_builder.build.host import Host

    host = Host(python=sys.executable, torch_version="2.13.0+cpu", cxx11_abi=True, torch_cuda=None, nvcc=None,
                nvcc_version=None, cuda_home=None, arch="x86_64", os="linux")
    b = cann_backend.BACKEND
    monkeypatch.delenv("ASCEND_TOOLKIT_HOME", raising=False)
    monkeypatch.setenv("ASCEND_HOME_PATH", str(tmp_path / "missing"))
    settings.reload()
    assert "is not a directory" in b.unavailable(host)
    monkeypatch.setenv("ASCEND_HOME_PATH", str(tmp_path))
    settings.reload()
    assert "CANN version is not known" in b.unavailable(host)  # no ascend_*_install.info
    (tmp_path / "ascend_toolkit_install.info").write_text("version=10.0.0\n")
    assert "two-digit" in b.unavailable(host)
    (tmp_path / "ascend_toolkit_install.info").write_text("version=8.5.0\n")
    assert "neither ASC's CMake package" in b.unavailable(host)
    # A build-matrix row (not probed) is judged by the CANN version it names, not by this machine.
    from dataclasses import replace

    row = replace(host, probed=False)
    assert b.unavailable(replace(row, cann_version="8.5.0")) is None
    assert "not known" in b.unavailable(replace(row, cann_version="not known"))
    assert "names no CANN version" in b.unavailable(row)


# --------------------------------------------------------------------------------------------------
# Flow probing
# --------------------------------------------------------------------------------------------------

def _toolkit(root: Path, *, ascendc: str | None = None, asc: str | None = None, version="8.5.0") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "ascend_toolkit_install.info").write_text(f"package_name=Ascend-cann-toolkit\nversion={version}\n")
    if ascendc:
        (root / ascendc).mkdir(parents=True, exist_ok=True)
        (root / ascendc / "ascendc.cmake").write_text("# stand-in\n")
    if asc:
        (root / asc).mkdir(parents=True, exist_ok=True)
        (root / asc / "asc-config.cmake").write_text("# stand-in\n")
    return root


def test_probe_flows(tmp_path):
    assert cann_backend.probe_flows(None) == {}
    assert cann_backend.probe_flows(str(tmp_path / "nope")) == {}
    t = _toolkit(tmp_path / "a", ascendc="tools/tikcpp/ascendc_kernel_cmake")
    assert cann_backend.probe_flows(str(t)) == {"ascendc": str(t / "tools/tikcpp/ascendc_kernel_cmake")}
    t = _toolkit(tmp_path / "b", ascendc="compiler/tikcpp/ascendc_kernel_cmake",
                 asc="compiler/tikcpp/ascendc_kernel_cmake")
    assert set(cann_backend.probe_flows(str(t))) == {"asc", "ascendc"}
    t = _toolkit(tmp_path / "c", asc="some/odd/place/asc")  # found by the bounded search
    assert cann_backend.probe_flows(str(t)) == {"asc": str(t / "some/odd/place/asc")}


def test_choose_flow(tmp_path, monkeypatch):
    monkeypatch.delenv(cann_backend.FLOW_ENV, raising=False)
    p = load_project(RMSNORM)  # .cpp Ascend C sources: either flow
    both = {"asc": "/x", "ascendc": "/y"}
    assert cann_backend.choose_flow(p, both) == "asc"  # ASC when the toolkit has it
    assert cann_backend.choose_flow(p, {"ascendc": "/y"}) == "ascendc"
    monkeypatch.setenv(cann_backend.FLOW_ENV, "ascendc")
    settings.reload()
    assert cann_backend.choose_flow(p, both) == "ascendc"
    with pytest.raises(EnvironmentProblem, match="no ascendc.cmake"):
        cann_backend.choose_flow(p, {"asc": "/x"})
    monkeypatch.setenv(cann_backend.FLOW_ENV, "bisheng")
    settings.reload()
    with pytest.raises(EnvironmentProblem, match="unknown CANN build flow"):
        cann_backend.choose_flow(p, both)


def test_mixed_arch_groups_refused(tmp_path):
    root = tmp_path / "rmsnorm"
    shutil.copytree(RMSNORM, root, ignore=shutil.ignore_patterns("build", "__pycache__"))
    text = (root / "build.toml").read_text()
    (root / "build.toml").write_text(text + textwrap.dedent("""
        [kernel.extra_cann]
        backend = "cann"
        depends = ["torch"]
        src = ["rmsnorm_cann/rmsnorm_kernel.cpp"]
        soc-versions = ["Ascend910B2"]
        """))
    with pytest.raises(UsageError, match=r"kernel.extra_cann.soc-versions: targets arch groups \['c220'\]"):
        cann_backend.check_uniform_groups(load_project(root))
    cann_backend.check_uniform_groups(load_project(RMSNORM))


# --------------------------------------------------------------------------------------------------
# kernels_src/rmsnorm's cann kernel: golden CMake, both flows, both arch groups
# --------------------------------------------------------------------------------------------------

RMSNORM_ID = "_rmsnorm_cann_0123456789"
RMSNORM_RENDERS = {  # golden name -> (flow, arch group)
    "rmsnorm-ascendc-c220": ("ascendc", "c220"),
    "rmsnorm-ascendc-m200": ("ascendc", "m200"),
    "rmsnorm-asc-c220": ("asc", "c220"),
    "rmsnorm-asc-m200": ("asc", "m200"),
}


def rmsnorm_golden_text(golden: str) -> tuple[dict[str, str], str]:
    """(every rendered file, the normalized CMakeLists.txt) for one golden; scripts/update_goldens.py
    writes the golden files from this, the test only compares."""
    flow, group = RMSNORM_RENDERS[golden]
    files = cann_backend.render_project(load_project(RMSNORM), ext_id=RMSNORM_ID, glibcxx_abi=1, torch_mm=(2, 13),
                                        flow=flow, arch_group=group)
    return files, re.sub(r"kernel-builder \d+\.\d+\.\d+[^\s:]*", "kernel-builder {kb_version}", files["CMakeLists.txt"])


@pytest.mark.parametrize("golden", sorted(RMSNORM_RENDERS))
def test_rmsnorm_render_matches_golden(golden):
    flow, group = RMSNORM_RENDERS[golden]
    files, text = rmsnorm_golden_text(golden)
    path = GOLDEN / f"{golden}.CMakeLists.txt"
    assert path.is_file(), f"missing golden {path} (python scripts/update_goldens.py writes it)"
    assert text == path.read_text(), f"{golden} differs from {path}"
    assert "kb_kernels_anchor.cpp" in files  # two arch groups: a kernel library per group
    assert f'"-Wl,-soname,{RMSNORM_ID}_kernels.so"' in text
    assert f"KB_CANN_ARCH_{group.upper()}" in text and f"KB_CANN_FLOW_{flow.upper()}" in text
    assert "${KB_SOURCE_DIR}/rmsnorm_cann/rmsnorm_kernel.cpp" in text
    assert "rmsnorm_tiling.h" not in text.split("torch binding")[0].split("kernels")[-1]  # headers are not compiled


# --------------------------------------------------------------------------------------------------
# Host side of kernels_src/rmsnorm against the real torch-npu wheel
# --------------------------------------------------------------------------------------------------

def _npu_python_or_skip() -> dict:
    if not NPU_PY.exists():
        pytest.skip(NO_NPU_VENV)
    env = _clean_env(TORCH_DEVICE_BACKEND_AUTOLOAD="0")
    probe = subprocess.run([str(NPU_PY), "-c", "import importlib.util as u; print(u.find_spec('torch_npu') is not None)"],
                           capture_output=True, text=True, env=env)
    if probe.stdout.strip() != "True":
        pytest.skip(f"torch_npu is not installed in {NPU_VENV}")
    for tool in ("g++", "gcc", "cmake", "make", "nm", "objdump"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not found")
    return env


RMSNORM_HOST_BUILD = textwrap.dedent("""\
    import os, subprocess, sys
    from importlib.util import find_spec
    import torch
    from torch.utils import cpp_extension
    sys.path.insert(0, sys.argv[3])
    from kernel_builder.build.render import render
    gen, root, out = sys.argv[1], sys.argv[2], sys.argv[4]
    open(os.path.join(gen, "registration.h"), "w").write(render("registration.h.j2"))
    npu = os.path.dirname(find_spec("torch_npu").origin)
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    # The stub stands in for the aclrtlaunch_* functions CANN generates from rmsnorm_kernel.cpp.
    cmd = ["g++", "-shared", "-fPIC", "-std=c++20", "-O1", "-fno-gnu-unique", f"-D_GLIBCXX_USE_CXX11_ABI={abi}",
           "-DCANN_KERNEL", "-DTORCH_EXTENSION_NAME=_rmsnorm_cann_hosttest", f"-I{gen}", f"-I{root}",
           f"-I{root}/torch-ext", *[f"-I{p}" for p in cpp_extension.include_paths()], f"-I{npu}/include",
           f"-I{npu}/include/third_party/acl/inc", f"{root}/torch-ext/torch_binding.cpp", f"{gen}/stub.cpp",
           "-o", out, *[f"-L{p}" for p in cpp_extension.library_paths()], f"-L{npu}/lib",
           "-ltorch_npu", "-ltorch", "-ltorch_cpu", "-lc10", "-Wl,--no-undefined"]
    subprocess.run(cmd, check=True)
    print("ABI", abi)
    """)

LAUNCH_STUB = textwrap.dedent("""\
    // Stand-ins for the launchers CANN generates (same signatures as rmsnorm_cann/rmsnorm_npu.h declares).
    #include <stdint.h>
    typedef void* aclrtStream;
    #define KB_STUB(suffix)                                                                              \\
      extern "C" uint32_t aclrtlaunch_kb_rms_norm_##suffix(uint32_t, aclrtStream, void*, void*, void*,    \\
          uint32_t, uint32_t, uint32_t, uint32_t, float) { return KB_STUB_RC; }                          \\
      extern "C" uint32_t aclrtlaunch_kb_fused_add_rms_norm_##suffix(uint32_t, aclrtStream, void*, void*, \\
          void*, void*, void*, uint32_t, uint32_t, uint32_t, uint32_t, uint32_t, uint32_t, float) {       \\
        return KB_STUB_RC; }
    #ifndef KB_STUB_RC
    #define KB_STUB_RC 0
    #endif
    #ifdef KB_STUB_SOC
    extern "C" const char* kb_stub_soc() { return KB_STUB_SOC; }
    #else
    extern "C" const char* aclrtGetSocName() { return "Ascend910B1"; }  // CANN runtime stand-in
    #endif
    KB_STUB(f32)
    KB_STUB(f16)
    KB_STUB(bf16)
    """)


def test_rmsnorm_npu_binding_links_against_torch_npu_wheel(tmp_path):
    """torch-ext/torch_binding.cpp with CANN_KERNEL (which pulls in rmsnorm_cann/rmsnorm_npu.h) compiles against
    torch 2.13.0+cpu + torch-npu 2.13.0 headers with torch's ABI flag and links with --no-undefined."""
    env = _npu_python_or_skip()
    gen = tmp_path / "gen"
    gen.mkdir()
    (gen / "stub.cpp").write_text(LAUNCH_STUB)
    (tmp_path / "build.py").write_text(RMSNORM_HOST_BUILD)
    so = tmp_path / "rmsnorm_npu.so"
    r = subprocess.run([str(NPU_PY), "build.py", str(gen), str(RMSNORM), str(REPO / "builder"), str(so)],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr[-4000:]}"
    assert "ABI 1" in r.stdout
    undefined = subprocess.run(["nm", "-D", "--undefined-only", "-C", str(so)], capture_output=True, text=True).stdout
    assert "c10_npu::getCurrentNPUStream" in undefined and "c10_npu::NPUStream::stream() const" in undefined
    defined = subprocess.run(["nm", "-D", "--defined-only", "-C", str(so)], capture_output=True, text=True).stdout
    assert "aclrtlaunch_kb_fused_add_rms_norm_bf16" in defined  # resolved against the stub, by the declared signature


# --------------------------------------------------------------------------------------------------
# The real CLI against a fake CANN toolkit
# --------------------------------------------------------------------------------------------------

FAKE_ASCENDC_CMAKE = """\
# FAKE ascendc.cmake (kernel-builder tests): ascendc_library compiles a C++ stub of the launchers instead of the
# Ascend C sources it is given, records SOC_VERSION in the library and writes the aclrtlaunch headers.
set(KB_FAKE_DIR ${CMAKE_CURRENT_LIST_DIR})
function(ascendc_library name type)
  add_library(${name} ${type} ${KB_FAKE_DIR}/launch_stub.cpp)
  set_target_properties(${name} PROPERTIES POSITION_INDEPENDENT_CODE ON)
  target_compile_definitions(${name} PRIVATE "KB_STUB_SOC=\\"${SOC_VERSION}\\"")
  foreach(src ${ARGN})
    if(NOT EXISTS ${src})
      message(FATAL_ERROR "fake ascendc.cmake: ${src} does not exist")
    endif()
  endforeach()
  set(plain "uint32_t, aclrtStream, void*, void*, void*, uint32_t, uint32_t, uint32_t, uint32_t, float")
  set(fused "uint32_t, aclrtStream, void*, void*, void*, void*, void*, uint32_t, uint32_t, uint32_t, uint32_t, uint32_t, uint32_t, float")
  foreach(t f32 f16 bf16)
    file(WRITE ${CMAKE_BINARY_DIR}/include/${name}/aclrtlaunch_kb_rms_norm_${t}.h
         "#pragma once\\n#include \\"acl/acl_base.h\\"\\nextern \\"C\\" uint32_t aclrtlaunch_kb_rms_norm_${t}(${plain});\\n")
    file(WRITE ${CMAKE_BINARY_DIR}/include/${name}/aclrtlaunch_kb_fused_add_rms_norm_${t}.h
         "#pragma once\\n#include \\"acl/acl_base.h\\"\\nextern \\"C\\" uint32_t aclrtlaunch_kb_fused_add_rms_norm_${t}(${fused});\\n")
  endforeach()
endfunction()
""" + STUB_ASCENDC_HELPERS


def _fake_cann(root: Path) -> Path:
    kdir = root / "tools/tikcpp/ascendc_kernel_cmake"
    kdir.mkdir(parents=True)
    (kdir / "ascendc.cmake").write_text(FAKE_ASCENDC_CMAKE)
    (kdir / "launch_stub.cpp").write_text(LAUNCH_STUB)
    (root / "x86_64-linux").mkdir()
    (root / "x86_64-linux" / "ascend_toolkit_install.info").write_text(
        "package_name=Ascend-cann-toolkit\nversion=8.5.0\narch=x86_64\n")
    (root / "lib64").mkdir()
    (root / "include").mkdir()
    (root / "empty.c").write_text("void kb_fake_ascendcl(void) {}\n")
    subprocess.run(["gcc", "-shared", "-fPIC", str(root / "empty.c"), "-o", str(root / "lib64/libascendcl.so")],
                   check=True)
    return root


def test_cli_builds_rmsnorm_cann_variant_with_fake_toolkit(tmp_path):
    env = _npu_python_or_skip()
    import platform

    if platform.machine() != "x86_64":
        pytest.skip("the fake toolkit is laid out for x86_64")
    cann = _fake_cann(tmp_path / "cann")
    out = tmp_path / "out"
    env.update(ASCEND_HOME_PATH=str(cann), KERNEL_BUILDER_CACHE=str(tmp_path / "cache"),
               PYTHONPATH=str(REPO / "builder"), PYTHONDONTWRITEBYTECODE="1")
    variant = "torch213-cxx11-cann85-x86_64-linux"
    cmd = [str(NPU_PY), "-m", "kernel_builder", "build", str(RMSNORM), "--out", str(out), "--variant", variant]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
    vdir = out / variant
    meta = json.loads((vdir / "metadata.json").read_text())
    mid = meta["id"]
    assert mid.startswith("_rmsnorm_cann_")
    assert meta["backend"] == {"type": "cann", "archs": ["dav-2002", "dav-2201"]}
    prov = meta["provenance"]["cann"]
    assert prov["version"] == "8.5.0" and prov["torch-npu"] == "2.13.0" and prov["flow"] == "ascendc"
    assert prov["arch-groups"] == {"c220": ["Ascend910B1"], "m200": ["Ascend310P3"]}
    names = sorted(p.name for p in vdir.iterdir())
    assert names == sorted(["__init__.py", "layers.py", "_ops.py", "metadata.json", f"{mid}.abi3.so",
                            f"{mid}_c220.so", f"{mid}_m200.so"])
    ops = (vdir / "_ops.py").read_text()
    assert f'"c220": "{mid}_c220.so"' in ops and '"Ascend310P3": "m200"' in ops and f"ops = torch.ops.{mid}" in ops
    # The extension needs the per-group kernel library by soname, and torch_npu; each group library carries
    # that soname and was built for its group's SoC.
    dyn = subprocess.run(["objdump", "-p", str(vdir / f"{mid}.abi3.so")], capture_output=True, text=True).stdout
    assert f"NEEDED               {mid}_kernels.so" in dyn and "libtorch_npu.so" in dyn
    for group, soc in (("c220", "Ascend910B1"), ("m200", "Ascend310P3")):
        lib = vdir / f"{mid}_{group}.so"
        assert f"SONAME               {mid}_kernels.so" in subprocess.run(["objdump", "-p", str(lib)],
                                                                        capture_output=True, text=True).stdout
        assert soc.encode() in lib.read_bytes()
    syms = subprocess.run(["nm", "-D", "-C", str(vdir / f"{mid}.abi3.so")], capture_output=True, text=True).stdout
    assert f"W PyInit_{mid}" in syms and "U aclrtlaunch_kb_rms_norm_f16" in syms  # ours is weak
    assert "U c10_npu::getCurrentNPUStream" in syms

    # The loader's own parser accepts the metadata; our check passes (layout, digest; no import: no NPU here).
    from kernels._rust import Metadata

    Metadata.from_bytes((vdir / "metadata.json").read_bytes())
    chk = subprocess.run([sys.executable, "-m", "kernel_builder", "check", str(vdir), "--no-abi"], capture_output=True,
                         text=True, env=_clean_env(KERNEL_BUILDER_CACHE=str(tmp_path / "cache2")), timeout=600)
    assert chk.returncode == 0, chk.stdout + chk.stderr

    # A rebuild with nothing changed rebuilds nothing.
    before = {p.name: p.stat().st_mtime_ns for p in vdir.iterdir()}
    r2 = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert r2.returncode == 0, r2.stderr
    assert {p.name: p.stat().st_mtime_ns for p in vdir.iterdir()} == before


# --------------------------------------------------------------------------------------------------
# Import-time dispatch: the generated cann _ops.py and sonames, with tiny C libraries
# --------------------------------------------------------------------------------------------------

EXT_C = """\
#include <Python.h>
extern int kb_which(void);
static PyModuleDef def = {PyModuleDef_HEAD_INIT, "%(id)s", NULL, -1, NULL, NULL, NULL, NULL, NULL};
PyMODINIT_FUNC PyInit_%(id)s(void) {
  PyObject* m = PyModule_Create(&def);
  if (m) PyModule_AddIntConstant(m, "which", kb_which());
  return m;
}
"""


def test_ops_py_loads_the_group_library_of_the_npu(tmp_path):
    import sysconfig

    if shutil.which("gcc") is None:
        pytest.skip("gcc not found")
    mid = "_npuprobe_cann_abc"
    pkg = tmp_path / "npuprobe"
    pkg.mkdir()
    for group, value in (("c220", 220), ("m200", 200)):
        (tmp_path / f"{group}.c").write_text(f"int kb_which(void) {{ return {value}; }}\n")
        subprocess.run(["gcc", "-shared", "-fPIC", f"-Wl,-soname,{mid}_kernels.so", str(tmp_path / f"{group}.c"),
                        "-o", str(pkg / f"{mid}_{group}.so")], check=True)
    (tmp_path / "ext.c").write_text(EXT_C % {"id": mid})
    subprocess.run(["gcc", "-shared", "-fPIC", "-DPy_LIMITED_API=0x03090000",
                    f"-I{sysconfig.get_paths()['include']}", str(tmp_path / "ext.c"), str(pkg / f"{mid}_c220.so"),
                    "-o", str(pkg / f"{mid}.abi3.so")], check=True)
    groups = {"c220": f"{mid}_c220.so", "m200": f"{mid}_m200.so"}
    (pkg / "_ops.py").write_text(render("cann/_ops.py.j2", id=mid, libs=groups,
                                        socs=cann_backend.soc_group_table(groups)))
    (pkg / "__init__.py").write_text(f"from ._ops import ops\nfrom . import {mid} as ext\n")
    probe = "import npuprobe; print('WHICH', npuprobe.ext.which)"
    for soc, want in (("Ascend310P3", 200), ("Ascend910B2", 220), ("Ascend910_9392", 220), ("Ascend910B4_1", 220)):
        r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path,
                           env=dict(os.environ, KERNEL_BUILDER_NPU_SOC=soc))
        assert r.returncode == 0, r.stderr
        assert f"WHICH {want}" in r.stdout, (soc, r.stdout)
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path,
                       env=dict(os.environ, KERNEL_BUILDER_NPU_SOC="Ascend310B1"))
    assert r.returncode != 0 and "no kernels for NPU 'Ascend310B1' (arch group m300)" in r.stderr
