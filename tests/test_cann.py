"""Ascend C / CANN support that needs no CANN toolkit and no NPU: SoC -> arch groups, CANN version strings
read the loader's way, variant names held against the loader, cann kernel tables, and the CMake projects
rendered for both build flows (golden files under tests/golden/cann/).

`python scripts/update_goldens.py` rewrites the golden files after a deliberate change (review the diff);
the tests only compare.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from packaging.version import Version

from kernel_builder import settings

from kernel_builder.backends import cann_versions as cv
from kernel_builder.backends import cann as cann_backend
from kernel_builder.project.config import load_project
from kernel_builder.project.options import BuildOptions
from kernel_builder.errors import ConfigError
from kernel_builder.build.host import Host
from kernel_builder.variants import noarch, parse as kb_parse

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden" / "cann"
# made by `bash scripts/setup.sh --npu`; KB_NPU_VENV points elsewhere
NPU_VENV = Path(os.environ.get("KB_NPU_VENV", HERE.parent / ".venv-npu"))


# --------------------------------------------------------------------------------------------------
# SoC -> arch groups
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("soc,arch,dav", [
    ("Ascend910B1", "c220", "dav-2201"), ("Ascend910B2C", "c220", "dav-2201"), ("Ascend910B4", "c220", "dav-2201"),
    ("Ascend910_9391", "c220", "dav-2201"), ("Ascend910_9362", "c220", "dav-2201"),
    ("Ascend310P1", "m200", "dav-2002"), ("Ascend310P3", "m200", "dav-2002"),
    ("Ascend310B1", "m300", "dav-3002"),
])
def test_soc_arch(soc, arch, dav):
    assert cv.soc_arch(soc) == arch
    assert cv.npu_arch(soc) == dav
    assert cv.npu_arch(arch) == dav


@pytest.mark.parametrize("soc", ["Ascend910B9", "ascend910b1", "Ascend910", "", "c220", "Ascend910B1 "])
def test_unknown_soc(soc):
    with pytest.raises(ValueError, match="unknown Ascend SoC"):
        cv.soc_arch(soc)


def test_group_socs_one_compile_per_arch():
    groups = cv.group_socs(["Ascend910B1", "Ascend310P3", "Ascend910_9391", "Ascend910B1", "Ascend310P1"])
    assert groups == {"c220": ("Ascend910B1", "Ascend910_9391"), "m200": ("Ascend310P3", "Ascend310P1")}
    assert list(groups) == ["c220", "m200"]  # order of first appearance
    assert cv.group_socs([]) == {}
    with pytest.raises(ValueError, match="Ascend999"):
        cv.group_socs(["Ascend910B1", "Ascend999"])


def test_every_known_soc_has_an_arch():
    assert set(cv.DEFAULT_SOC_VERSIONS) <= set(cv.KNOWN_SOCS)
    for soc in cv.KNOWN_SOCS:
        assert cv.npu_arch(soc).startswith("dav-")


# --------------------------------------------------------------------------------------------------
# CANN versions, the loader's way
# --------------------------------------------------------------------------------------------------

def _loader_backend(version: str):
    """What kernels 0.17.2 `_select_backend` does with torch_npu's get_cann_version() string."""
    from kernels.backends import CANN

    return CANN(version=Version(f"{version[0]}.{version[2]}"))


@pytest.mark.parametrize("version,mm,backend", [
    ("8.2.RC1", (8, 2), "cann82"), ("8.1.RC1", (8, 1), "cann81"), ("8.3.RC1", (8, 3), "cann83"),
    ("8.5.0", (8, 5), "cann85"), ("9.0.0", (9, 0), "cann90"), ("9.1.0", (9, 1), "cann91"),
    ("9.2.0-beta.2", (9, 2), "cann92"), ("8.0", (8, 0), "cann80"), (" 8.2.RC1 ", (8, 2), "cann82"),
    ("8.0.RC2.alpha003", (8, 0), "cann80"),
])
def test_cann_version_parsing_matches_loader(version, mm, backend):
    assert cv.cann_mm(version) == mm
    assert cv.cann_backend(version) == backend
    assert _loader_backend(version.strip()).variant_str == backend


@pytest.mark.parametrize("version,match", [
    ("not known", "not known"), ("", "not known"),
    ("10.0.0", "two-digit"), ("8.10.0", "two-digit"), ("10.0", "two-digit"),
    ("8", "MAJOR.MINOR"), ("v8.2", "MAJOR.MINOR"), ("8.x", "MAJOR.MINOR"), ("8.2RC1", "MAJOR.MINOR"),
])
def test_cann_version_refused(version, match):
    with pytest.raises(cv.CannVersionError, match=match):
        cv.cann_mm(version)


def test_loader_cannot_represent_two_digit_versions():
    """Why 10.0.0 and 8.10.0 are refused rather than written: the loader misreads or rejects them."""
    from packaging.version import InvalidVersion

    with pytest.raises(InvalidVersion):
        _loader_backend("10.0.0")
    assert _loader_backend("8.10.0").variant_str == "cann81"  # silently wrong: we refuse it


@pytest.mark.parametrize("text,version", [
    ("package_name=Ascend-cann-toolkit\nversion=8.2.RC1\narch=aarch64\n", "8.2.RC1"),
    ("Version=8.5.0\n", "not known"),  # torch_npu looks for lowercase "version"
    ("version=9.2.0-beta.2\nversion=8.0.0\n", "9.2.0-beta.2"),
    ("innerversion=V100R001C23\nversion=8.3.RC1\n", "V100R001C23"),  # torch_npu takes the first line with "version"
    ("  version = 8.1.RC1  \n", " 8.1.RC1"),
    ("nothing here\n", "not known"),
    ("", "not known"),
])
def test_read_install_info_like_torch_npu(text, version):
    assert cv.read_install_info(text) == version


def test_find_install_info(tmp_path, monkeypatch):
    monkeypatch.delenv("ASCEND_HOME_PATH", raising=False)
    assert cv.find_install_info() is None
    assert cv.find_install_info(tmp_path) is None
    d = tmp_path / "aarch64-linux"
    d.mkdir()
    (d / "ascend_toolkit_install.info").write_text("version=8.5.0\n")
    (tmp_path / "unrelated_install.info").write_text("version=1.0\n")
    assert cv.find_install_info(tmp_path) == d / "ascend_toolkit_install.info"
    monkeypatch.setenv("ASCEND_HOME_PATH", str(tmp_path))
    settings.reload()
    assert cann_backend.toolkit_version() == "8.5.0"
    assert cann_backend.CANN._version_for(None) == "8.5.0"


# --------------------------------------------------------------------------------------------------
# Variant names against the loader
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("torch_mm,version,arch,name", [
    ((2, 13), "8.2.RC1", "aarch64", "torch213-cxx11-cann82-aarch64-linux"),
    ((2, 7), "8.2.RC1", "x86_64", "torch27-cxx11-cann82-x86_64-linux"),
    ((2, 9), "8.5.0", "aarch64", "torch29-cxx11-cann85-aarch64-linux"),
    ((2, 12), "9.2.0-beta.2", "x86_64", "torch212-cxx11-cann92-x86_64-linux"),
])
def test_variant_names_round_trip(torch_mm, version, arch, name):
    from kernels.variants import ArchVariant, parse_variant

    v = cv.compiled_variant(torch_mm, True, version, arch)
    assert v.name == name
    assert kb_parse(name) == v
    assert v.backend_type == "cann" and v.backend_version == cv.cann_mm(version)
    lv = parse_variant(name)
    assert isinstance(lv, ArchVariant) and lv.variant_str == name
    assert lv.arch.backend.name == "cann"
    assert lv.arch.backend.variant_str == cv.cann_backend(version)


def test_noarch_is_torch_npu():
    from kernels.variants import NoarchVariant, parse_variant

    assert noarch("cann").name == "torch-npu"
    assert noarch("cann").backend_type == "cann"
    lv = parse_variant("torch-npu")
    assert isinstance(lv, NoarchVariant) and lv.variant_str == "torch-npu"


def _resolve(names, cann="8.2", cpu="aarch64", torch_version="2.13"):
    from kernels.backends import CANN
    from kernels.variants import VariantAccepted, _resolve_variant_for_system, parse_variant

    applicable, trace = _resolve_variant_for_system(
        variants=[parse_variant(n) for n in names], selected_backend=CANN(version=Version(cann)), cpu=cpu,
        os="linux", torch_version=Version(torch_version), torch_cxx11_abi=True, tvm_ffi_version=None)
    reasons = {d.variant.variant_str: getattr(d, "reason", None) for d in trace}
    return [v.variant_str for v in applicable], reasons, VariantAccepted


def test_loader_resolves_cann_variants():
    ours = cv.compiled_variant((2, 13), True, "8.2.RC1", "aarch64").name
    names = [ours, "torch213-cxx11-cann85-aarch64-linux", "torch213-cxx11-cann81-aarch64-linux",
             "torch212-cxx11-cann82-aarch64-linux", "torch213-cxx11-cann82-x86_64-linux",
             "torch213-cxx11-cpu-aarch64-linux", "torch-npu", "torch-cann", "torch-cpu", "torch-universal"]
    applicable, reasons, _ = _resolve(names)
    # Exact CANN match only (unlike CUDA, a lower minor is not accepted); compiled before noarch before universal.
    assert applicable == [ours, "torch-npu", "torch-universal"]
    assert "does not match selected backend (cann82)" in reasons["torch213-cxx11-cann85-aarch64-linux"]
    assert "does not match selected backend (cann82)" in reasons["torch213-cxx11-cann81-aarch64-linux"]
    assert "Torch version" in reasons["torch212-cxx11-cann82-aarch64-linux"]
    assert "CPU" in reasons["torch213-cxx11-cann82-x86_64-linux"]
    assert "does not match system backend (npu)" in reasons["torch-cann"]
    assert "does not match system backend (npu)" in reasons["torch-cpu"]


def test_loader_resolves_for_the_version_we_name():
    for version in ("8.5.0", "9.2.0-beta.2", "8.2.RC1"):
        name = cv.compiled_variant((2, 13), True, version, "aarch64").name
        mm = cv.cann_mm(version)
        applicable, _, _ = _resolve([name], cann=f"{mm[0]}.{mm[1]}")
        assert applicable == [name]
        other = "8.2" if mm != (8, 2) else "8.5"
        assert _resolve([name], cann=other)[0] == []


def test_backend_variant_for_host(monkeypatch):
    host = Host(python=sys.executable, torch_version="2.13.0+cpu", cxx11_abi=True, torch_cuda=None, nvcc=None,
                nvcc_version=None, cuda_home=None, arch="aarch64", os="linux", cann_version="8.2.RC1")
    b = cann_backend.BACKEND
    assert b.family == "cann" and b.defines() == ["-DCANN_KERNEL"]
    assert b.variant(host).name == "torch213-cxx11-cann82-aarch64-linux"
    assert "CANN 8.2.RC1" in b.toolchain(host)
    with pytest.raises(cv.CannVersionError):
        b.variant(replace(host, cann_version="10.0.0"))
    monkeypatch.delenv("ASCEND_HOME_PATH", raising=False)
    monkeypatch.delenv("ASCEND_TOOLKIT_HOME", raising=False)
    monkeypatch.setattr(cann_backend, "DEFAULT_ASCEND_HOME", "/nonexistent/ascend")
    assert b.unavailable(host) == "CANN toolkit not found (ASCEND_HOME_PATH unset; source <cann>/set_env.sh)"


# --------------------------------------------------------------------------------------------------
# cann kernel tables and the rendered CMake projects
# --------------------------------------------------------------------------------------------------

SAMPLE_BUILD_TOML = """\
[general]
name = "add-npu"
version = 1
edition = 5
license = "Apache-2.0"
backends = ["cann", "cpu"]

[torch]
src = ["torch-ext/torch_binding.cpp", "torch-ext/torch_binding.h"]
include = ["torch-ext/include"]
cxx-flags = ["-Wno-unused-parameter"]

[kernel.add_cann]
backend = "cann"
depends = ["torch"]
src = ["add_cann/add_custom.cpp", "add_cann/add_tiling.h"]
include = ["add_cann"]
soc-versions = ["Ascend910B1", "Ascend910_9391", "Ascend310P3"]
ascendc-flags = ["-O2", "--cce-auto-sync"]

[kernel.mul_cann]
backend = "cann"
depends = ["torch"]
src = ["mul_cann/mul_custom.cpp"]
cxx-flags = ["-Wall"]

[kernel.add_cpu]
backend = "cpu"
depends = ["torch"]
src = ["add_cpu/add.cpp"]
"""


def _sample(tmp_path: Path, build_toml: str = SAMPLE_BUILD_TOML) -> Path:
    root = tmp_path / "add-npu"
    for rel in ("add_cann/add_custom.cpp", "add_cann/add_tiling.h", "mul_cann/mul_custom.cpp", "add_cpu/add.cpp",
                "torch-ext/torch_binding.cpp", "torch-ext/torch_binding.h", "torch-ext/add_npu/__init__.py",
                "torch-ext/include/common.h", "add_asc/add.asc"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("// placeholder\n")
    (root / "build.toml").write_text(build_toml)
    return root


def test_cann_kernel_table_is_read(tmp_path):
    p = load_project(_sample(tmp_path))
    add = next(k for k in p.kernels if k.name == "add_cann")
    assert add.options == {"soc-versions": ("Ascend910B1", "Ascend910_9391", "Ascend310P3"),
                         "ascendc-flags": ("-O2", "--cce-auto-sync")}
    assert cann_backend.soc_versions(add) == ("Ascend910B1", "Ascend910_9391", "Ascend310P3")
    mul = next(k for k in p.kernels if k.name == "mul_cann")
    assert cann_backend.soc_versions(mul) == cv.DEFAULT_SOC_VERSIONS
    assert not any("not built" in n for n in p.notes)  # cann is a built backend now (when CANN is present)
    assert cann_backend.kernel_arch_groups(p) == {"c220": ("Ascend910B1", "Ascend910_9391"), "m200": ("Ascend310P3",)}
    assert cann_backend.BACKEND.archs(p, None, BuildOptions()) == ["dav-2002", "dav-2201"]
    assert cann_backend.flow_for(p) == "ascendc"


@pytest.mark.parametrize("replace,key,value", [
    ('soc-versions = ["Ascend910B1", "Ascend910_9391", "Ascend310P3"]', "soc-versions", "Ascend910C9"),
    ('"add_cann/add_tiling.h"]', "src", "add_cann/add_tiling.cuh"),
    ('ascendc-flags = ["-O2", "--cce-auto-sync"]', "ascendc-flags", "-O2"),
])
def test_cann_table_errors(tmp_path, replace, key, value):
    new = {"soc-versions": 'soc-versions = ["Ascend910B1", "Ascend910C9"]',
           "src": '"add_cann/add_tiling.cuh"]',
           "ascendc-flags": 'ascendc-flags = "-O2"'}[key]
    with pytest.raises(ConfigError) as e:
        load_project(_sample(tmp_path, SAMPLE_BUILD_TOML.replace(replace, new)))
    assert f"kernel.add_cann.{key}" in str(e.value) and value in str(e.value)


def test_asc_sources_accepted(tmp_path):
    toml = SAMPLE_BUILD_TOML.replace('src = ["mul_cann/mul_custom.cpp"]', 'src = ["add_asc/add.asc"]')
    p = load_project(_sample(tmp_path, toml))
    assert cann_backend.flow_for(p) == "asc"
    with pytest.raises(ValueError, match=r"\.asc sources"):
        cann_backend.render_project(p, ext_id="_x", glibcxx_abi=1, torch_mm=(2, 13), flow="ascendc",
                                    arch_group="c220")


def _normalize(text: str) -> str:
    return re.sub(r"kernel-builder \d+\.\d+\.\d+[^\s:]*", "kernel-builder {kb_version}", text)


RENDERS = {
    # golden file -> (flow, arch group, glibcxx_abi, torch major.minor)
    "ascendc-c220": ("ascendc", "c220", 1, (2, 13)),
    "ascendc-m200": ("ascendc", "m200", 1, (2, 13)),
    "asc-c220": ("asc", "c220", 1, (2, 13)),
}
EXT_ID = "_add_npu_cann_0123abc"


def golden_texts(golden: str, tmp_path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(every rendered file, golden file name -> its normalized text): what the renderer makes now.
    The test compares; only scripts/update_goldens.py writes the golden files."""
    flow, group, abi, torch_mm = RENDERS[golden]
    p = load_project(_sample(tmp_path))
    files = cann_backend.render_project(p, ext_id=EXT_ID, glibcxx_abi=abi, torch_mm=torch_mm, flow=flow,
                                        arch_group=group)
    return files, {f"{golden}.CMakeLists.txt": _normalize(files["CMakeLists.txt"]),
                   "kb_binding_0.cpp": _normalize(files["kb_binding_0.cpp"])}


@pytest.mark.parametrize("golden", sorted(RENDERS))
def test_render_matches_golden(tmp_path, golden):
    files, texts = golden_texts(golden, tmp_path)
    # The sample spans two arch groups (c220, m200): each group's kernels become their own library.
    assert sorted(files) == ["CMakeLists.txt", "glibc_compat.cpp", "kb_binding_0.cpp", "kb_kernels_anchor.cpp",
                             "module_init.cpp", "registration.h"]
    for name, text in texts.items():
        path = GOLDEN / name
        assert path.is_file(), f"missing golden {path} (python scripts/update_goldens.py writes it)"
        assert text == path.read_text(), f"{name} differs from its golden file {path}"


def test_render_contents(tmp_path):
    p = load_project(_sample(tmp_path))
    r = lambda **kw: cann_backend.render_project(p, ext_id=EXT_ID, torch_mm=(2, 13), **kw)["CMakeLists.txt"]
    ascendc = r(glibcxx_abi=1, flow="ascendc", arch_group="c220")
    assert "tools/tikcpp/ascendc_kernel_cmake" in ascendc and "include(${ASCENDC_CMAKE_DIR}/ascendc.cmake)" in ascendc
    assert 'set(SOC_VERSION "Ascend910B1"' in ascendc
    assert "ascendc_library(kb_add_cann STATIC" in ascendc and "ascendc_library(kb_mul_cann STATIC" in ascendc
    assert "${CMAKE_CURRENT_BINARY_DIR}/include/kb_add_cann" in ascendc  # aclrtlaunch_<kernel>.h
    assert "add_cpu" not in ascendc  # the cpu kernel is not part of the cann .so
    m200 = r(glibcxx_abi=1, flow="ascendc", arch_group="m200")
    assert 'set(SOC_VERSION "Ascend310P3"' in m200 and "kb_mul_cann" not in m200  # mul_cann targets c220 only
    asc = r(glibcxx_abi=1, flow="asc", arch_group="c220")
    assert "find_package(ASC REQUIRED)" in asc and f"project({EXT_ID} LANGUAGES ASC CXX)" in asc
    assert 'set(KB_NPU_ARCH "dav-2201"' in asc and "--npu-arch=${KB_NPU_ARCH}" in asc
    for text in (ascendc, m200, asc):
        assert 'SUFFIX ".abi3.so"' in text and f'OUTPUT_NAME "{EXT_ID}"' in text
        assert "_GLIBCXX_USE_CXX11_ABI=1" in text and "_GLIBCXX_USE_CXX11_ABI=0" not in text
        assert "Py_LIMITED_API=0x03090000" in text and "-fno-gnu-unique" in text
        assert "${KB_TORCH_NPU_DIR}/include" in text and "torch_npu" in text
        assert "/work/" not in text and str(tmp_path) not in text  # no host paths in a render
    # The C++ ABI is torch's, passed in: 0 gives 0 everywhere.
    old = r(glibcxx_abi=0, flow="asc", arch_group="c220")
    assert "_GLIBCXX_USE_CXX11_ABI=0" in old and "_GLIBCXX_USE_CXX11_ABI=1" not in old
    assert "CXX_STANDARD 17" in cann_backend.render_project(p, ext_id=EXT_ID, glibcxx_abi=1, torch_mm=(2, 11),
                                                            flow="asc", arch_group="c220")["CMakeLists.txt"]


def test_render_refusals(tmp_path):
    p = load_project(_sample(tmp_path))
    kw = dict(ext_id=EXT_ID, torch_mm=(2, 13))
    with pytest.raises(ValueError, match="span arch groups"):
        cann_backend.render_project(p, glibcxx_abi=1, **kw)
    with pytest.raises(ValueError, match="m300"):
        cann_backend.render_project(p, glibcxx_abi=1, arch_group="m300", **kw)
    with pytest.raises(ValueError, match="glibcxx_abi"):
        cann_backend.render_project(p, glibcxx_abi=2, arch_group="c220", **kw)
    with pytest.raises(ValueError, match="flow"):
        cann_backend.render_project(p, glibcxx_abi=1, arch_group="c220", flow="bisheng", **kw)
    one_group = SAMPLE_BUILD_TOML.replace('"Ascend910_9391", "Ascend310P3"', '"Ascend910_9391"')
    p1 = load_project(_sample(tmp_path / "one", one_group))
    files = cann_backend.render_project(p1, glibcxx_abi=1, **kw)  # a single group needs no arch_group
    assert 'set(SOC_VERSION "Ascend910B1"' in files["CMakeLists.txt"]


def test_render_for_host_uses_torch_abi(tmp_path):
    p = load_project(_sample(tmp_path))
    for abi in (True, False):
        host = Host(python=sys.executable, torch_version="2.13.0+cpu", cxx11_abi=abi, torch_cuda=None, nvcc=None,
                    nvcc_version=None, cuda_home=None, arch="x86_64", os="linux")
        text = cann_backend.render_for_host(p, host, EXT_ID, flow="asc", arch_group="c220")["CMakeLists.txt"]
        assert f"_GLIBCXX_USE_CXX11_ABI={int(abi)}" in text


def test_cmake_args():
    args = cann_backend.cmake_args("/src/k", cann_home="/usr/local/Ascend/ascend-toolkit/latest",
                                   torch_dir="/py/torch", torch_npu_dir="/py/torch_npu", python_include="/py/inc")
    assert "-DKB_SOURCE_DIR=/src/k" in args and "-DKB_TORCH_NPU_DIR=/py/torch_npu" in args
    assert "-DASCEND_CANN_PACKAGE_PATH=/usr/local/Ascend/ascend-toolkit/latest" in args


# --------------------------------------------------------------------------------------------------
# Host side against the real torch-npu wheel (no CANN: TORCH_DEVICE_BACKEND_AUTOLOAD=0)
# --------------------------------------------------------------------------------------------------

NPU_BINDING = textwrap.dedent("""\
    #include <torch/library.h>
    #include <ATen/ATen.h>
    #include "torch_npu/csrc/core/npu/NPUStream.h"

    namespace {
    at::Tensor add_one(const at::Tensor& x) {
      // Host side only: the stream a kernel would be launched on.
      aclrtStream stream = c10_npu::getCurrentNPUStream().stream();
      (void)stream;
      return x + 1;
    }
    }  // namespace

    TORCH_LIBRARY(kb_npu_probe, m) { m.def("add_one(Tensor x) -> Tensor"); }
    TORCH_LIBRARY_IMPL(kb_npu_probe, PrivateUse1, m) { m.impl("add_one", &add_one); }
    """)

NPU_BUILD = textwrap.dedent("""\
    import os, subprocess, sys
    from importlib.util import find_spec
    assert os.environ.get("TORCH_DEVICE_BACKEND_AUTOLOAD") == "0"
    import torch
    from torch.utils import cpp_extension
    npu = os.path.dirname(find_spec("torch_npu").origin)
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    mm = tuple(int(x) for x in torch.__version__.split(".")[:2])
    cmd = ["g++", "-shared", "-fPIC", "-std=c++20" if mm >= (2, 12) else "-std=c++17", "-O1", "-fno-gnu-unique",
           f"-D_GLIBCXX_USE_CXX11_ABI={abi}", "-DCANN_KERNEL",
           *[f"-I{p}" for p in cpp_extension.include_paths()], f"-I{npu}/include",
           f"-I{npu}/include/third_party/acl/inc", sys.argv[1], "-o", sys.argv[2],
           *[f"-L{p}" for p in cpp_extension.library_paths()], f"-L{npu}/lib",
           "-ltorch_npu", "-ltorch", "-ltorch_cpu", "-lc10", "-Wl,--no-undefined"]
    subprocess.run(cmd, check=True)
    print("ABI", abi)
    """)


def test_host_binding_links_against_torch_npu_wheel(tmp_path):
    python = NPU_VENV / "bin" / "python"
    if not python.exists():
        pytest.skip(f"no {NPU_VENV}: bash scripts/setup.sh --npu makes it (torch 2.13.0+cpu + torch-npu 2.13.0)")
    env = dict(os.environ, TORCH_DEVICE_BACKEND_AUTOLOAD="0")
    probe = subprocess.run([str(python), "-c", "import importlib.util as u; print(u.find_spec('torch_npu') is not None)"],
                           capture_output=True, text=True, env=env)
    if probe.stdout.strip() != "True":
        pytest.skip(f"torch_npu is not installed in {NPU_VENV}")
    if shutil.which("g++") is None:
        pytest.skip("no g++")
    (tmp_path / "binding.cpp").write_text(NPU_BINDING)
    (tmp_path / "build.py").write_text(NPU_BUILD)
    so = tmp_path / "probe.so"
    r = subprocess.run([str(python), "build.py", "binding.cpp", str(so)], capture_output=True, text=True, env=env,
                       cwd=tmp_path, timeout=600)
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
    # -Wl,--no-undefined passed, so every torch_npu symbol resolved against libtorch_npu.so with torch's ABI.
    undefined = subprocess.run(["nm", "-D", "--undefined-only", "-C", str(so)], capture_output=True, text=True).stdout
    assert "c10_npu::getCurrentNPUStream" in undefined


# A stand-in for CANN's ascendc.cmake: ascendc_library & co. become plain C++ static libraries, so the
# rendered CMakeLists configures and builds its binding half for real (the Ascend C compile is not tested).
# ascendc.cmake's target helpers, as plain CMake (shared by the fake toolkits of the tests)
STUB_ASCENDC_HELPERS = """\
function(ascendc_compile_definitions t)
  target_compile_definitions(${t} ${ARGN})
endfunction()
function(ascendc_include_directories t)
  target_include_directories(${t} ${ARGN})
endfunction()
function(ascendc_compile_options t)
  target_compile_options(${t} ${ARGN})
endfunction()
"""

STUB_ASCENDC_CMAKE = """\
function(ascendc_library name type)
  add_library(${name} ${type} ${ARGN})
  set_target_properties(${name} PROPERTIES POSITION_INDEPENDENT_CODE ON)
  file(WRITE ${CMAKE_BINARY_DIR}/include/${name}/aclrtlaunch_${name}.h "extern \\"C\\" int ${name}_stub();\\n")
endfunction()
""" + STUB_ASCENDC_HELPERS

CMAKE_BUILD_TOML = """\
[general]
name = "add-npu"
version = 1
edition = 5
license = "Apache-2.0"
backends = ["cann"]

[torch]
src = ["torch-ext/torch_binding.cpp"]

[kernel.add_cann]
backend = "cann"
depends = ["torch"]
src = ["add_cann/add_custom.cpp"]
soc-versions = ["Ascend910B2"]
ascendc-flags = ["-DKB_STUB_FLAG=1"]
"""

CMAKE_BINDING = """\
#include <ATen/ATen.h>
#include "registration.h"
#include "torch_npu/csrc/core/npu/NPUStream.h"
#include "aclrtlaunch_kb_add_cann.h"

namespace {
at::Tensor add_one(const at::Tensor& x) {
  aclrtStream stream = c10_npu::getCurrentNPUStream().stream();
  (void)stream;
  return x + kb_add_cann_stub();
}
}  // namespace

TORCH_LIBRARY_EXPAND(TORCH_EXTENSION_NAME, m) { m.def("add_one(Tensor x) -> Tensor"); }
TORCH_LIBRARY_IMPL_EXPAND(TORCH_EXTENSION_NAME, PrivateUse1, m) { m.impl("add_one", &add_one); }
"""

NPU_PATHS = """\
import os, sysconfig
from importlib.util import find_spec
print(os.path.dirname(find_spec("torch").origin))
print(os.path.dirname(find_spec("torch_npu").origin))
print(sysconfig.get_paths()["include"])
"""


def test_rendered_ascendc_project_builds_binding_with_stub_cann(tmp_path):
    """Configure and build the rendered CMake project (ascendc flow) against the torch-npu wheel, with a
    stub ascendc.cmake and an empty libascendcl.so standing in for CANN."""
    python = NPU_VENV / "bin" / "python"
    if not python.exists():
        pytest.skip(f"no {NPU_VENV}: bash scripts/setup.sh --npu makes it (torch 2.13.0+cpu + torch-npu 2.13.0)")
    if not (shutil.which("cmake") and shutil.which("g++") and shutil.which("make")):
        pytest.skip("cmake, make or g++ missing")
    env = dict(os.environ, TORCH_DEVICE_BACKEND_AUTOLOAD="0")
    paths = subprocess.run([str(python), "-c", NPU_PATHS], capture_output=True, text=True, env=env)
    if paths.returncode != 0:
        pytest.skip(f"torch_npu is not installed in {NPU_VENV}")
    torch_dir, npu_dir, py_inc = paths.stdout.split("\n")[:3]
    abi = subprocess.run([str(python), "-c", "import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))"],
                         capture_output=True, text=True, env=env).stdout.strip()

    root = tmp_path / "add-npu"
    for rel, text in {"build.toml": CMAKE_BUILD_TOML, "torch-ext/torch_binding.cpp": CMAKE_BINDING,
                      "torch-ext/add_npu/__init__.py": "",
                      "add_cann/add_custom.cpp": 'extern "C" int kb_add_cann_stub() { return KB_STUB_FLAG; }\n'}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    cann = tmp_path / "cann"
    (cann / "tools/tikcpp/ascendc_kernel_cmake").mkdir(parents=True)
    (cann / "tools/tikcpp/ascendc_kernel_cmake/ascendc.cmake").write_text(STUB_ASCENDC_CMAKE)
    (cann / "lib64").mkdir()
    (cann / "include").mkdir()
    (tmp_path / "empty.c").write_text("void kb_empty(void) {}\n")
    subprocess.run(["gcc", "-shared", "-fPIC", str(tmp_path / "empty.c"), "-o", str(cann / "lib64/libascendcl.so")],
                   check=True)

    p = load_project(root)
    ext_id = "_add_npu_cann_feed123"
    gen = tmp_path / "gen"
    gen.mkdir()
    files = cann_backend.render_project(p, ext_id=ext_id, glibcxx_abi=int(abi), torch_mm=(2, 13), flow="ascendc")
    for name, text in files.items():
        (gen / name).write_text(text)
    build = tmp_path / "build"
    args = cann_backend.cmake_args(root, cann_home=str(cann), torch_dir=torch_dir, torch_npu_dir=npu_dir,
                                   python_include=py_inc)
    for cmd in (["cmake", "-S", str(gen), "-B", str(build), *args], ["cmake", "--build", str(build), "-j2"]):
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
        assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    so = build / f"{ext_id}.abi3.so"
    assert so.is_file()
    dyn = subprocess.run(["nm", "-D", "-C", str(so)], capture_output=True, text=True).stdout
    assert f"W PyInit_{ext_id}" in dyn  # ours, weak: a project's own PyInit would win
    assert "U c10_npu::getCurrentNPUStream" in dyn
    needed = subprocess.run(["objdump", "-p", str(so)], capture_output=True, text=True).stdout
    assert "libtorch_npu.so" in needed


def test_flags_and_paths_reach_cmake_as_one_literal_argument(tmp_path):
    """A build.toml flag holding `)`, quotes, `${...}` or a backslash must stay one value in the rendered CMake, not
    end the command and inject another (execute_process ...) or expand a variable. Real cmake reads it back."""
    from kernel_builder.build.render import cmake_escape, cmake_quote

    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("cmake not found: the cann flows drive CMake, and this checks what CMake reads")
    hostile = ['-DX="a") execute_process(COMMAND touch pwned', "-DY=${CMAKE_COMMAND}", "-DZ=a\\b c"]
    script = tmp_path / "read.cmake"
    lines = [f"set(v{i} {cmake_quote(f)})\nfile(APPEND {tmp_path}/out \"${{v{i}}}\\n\")\n" for i, f in enumerate(hostile)]
    lines.append(f'set(p "${{CMAKE_CURRENT_LIST_DIR}}/{cmake_escape("src/a) b$x.cpp")}")\nfile(APPEND {tmp_path}/out "${{p}}\\n")\n')
    script.write_text("".join(lines))
    r = subprocess.run([cmake, "-P", str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out").read_text().splitlines() == hostile + [f"{tmp_path}/src/a) b$x.cpp"]
    assert not (tmp_path / "pwned").exists()
