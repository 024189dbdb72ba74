"""Our generated CMake projects (both CANN flows) configured through asc-devkit's REAL cmake/ modules.

No CANN toolkit exists here, but Huawei's open asc-devkit does (../shared/ascend/asc-devkit, read-only, never
copied: linked to at run time). `_toolkit()` lays its cmake modules out where a CANN toolkit installs them, by
symlink, following asc-devkit's own install rules:

- cmake/CMakeLists.txt installs cmake/asc/ as `<arch>-linux/tikcpp/ascendc_kernel_cmake/` (ascendc.cmake,
  legacy_modules/, fwk_modules/, asc_modules/, aicpu_modules/) and asc-config.cmake into `<arch>-linux/lib64/cmake/`;
- scripts/package/asc-devkit/asc-devkit.xml links `compiler/tikcpp` and `tools/tikcpp` to `<arch>-linux/tikcpp`,
  `ascendc_kernel_cmake/asc-config.cmake` to `lib64/cmake/asc-config.cmake`, and `asc` to `<arch>-linux/asc`
  (include/, impl/: the Ascend C API);
- a toolkit's top-level `lib64`, `include`, `bin` are links to `<arch>-linux/...`.

Besides those links, only what a toolkit has and we cannot: `<arch>-linux/ascend_toolkit_install.info` (the
version line), an empty `bin/` (no bisheng, no ascendc_pack_kernel) and `lib64/libascendc_runtime.a` as an EMPTY
archive (legacy_modules/host_intf.cmake unpacks it at configure time; asc-devkit builds it from
tools/build/asc_rt against the closed ACL runtime headers). No ccec_compiler/: the closed compiler is absent.
None of the devkit's modules is replaced.

What this proves, per flow, for kernels_src/rmsnorm:
- ascendc (legacy ascendc.cmake): the whole top-level configure + generate passes through the real modules
  (host_config: SOC_VERSION, ASCEND_CANN_PACKAGE_PATH; ascendc_library's ExternalProjects); the closed compiler is
  first needed in the BUILD, when the `<kernel>_precompile` sub-project compiles the kernel with
  `<home>/ascendc_devkit/ccec_compiler/bin/bisheng` (make: "No such file or directory", Error 127); our
  definitions have reached that compile line.
- asc (ASC language package): find_package(ASC) passes (asc-config.cmake -> fwk_modules, FindASC.cmake); the closed
  compiler is first needed in our project(... LANGUAGES ASC CXX): CMakeDetermineASCCompiler.cmake stops with
  "ASC compiler not found or does not exist". What our CMakeLists does after project() cannot run without bisheng;
  the ascendc_* functions it calls are checked to exist in the devkit's modules with the arguments we pass.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from kernel_builder.backends import cann as cann_backend
from kernel_builder.project.config import load_project

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RMSNORM = REPO / "kernels_src" / "rmsnorm"
DEVKIT = REPO.parent / "shared" / "ascend" / "asc-devkit"
EXT_ID = "_rmsnorm_cann_devkit"
KERNEL_TARGET = "kb_rmsnorm_cann"
VERSION = "8.5.0"
ARCH = platform.machine()

pytestmark = [
    pytest.mark.skipif(not (DEVKIT / "cmake" / "asc" / "ascendc.cmake").is_file(),
                       reason=f"no asc-devkit at {DEVKIT} (CI has it at ../shared/ascend)"),
    pytest.mark.skipif(shutil.which("cmake") is None or shutil.which("make") is None, reason="cmake or make missing"),
    pytest.mark.skipif(ARCH not in ("x86_64", "aarch64"), reason=f"CANN toolkits are x86_64/aarch64 (this is {ARCH})"),
    pytest.mark.skipif(shutil.which("bisheng") is not None,
                       reason="a bisheng is on PATH: the closed-compiler step differs"),
]


def _link(path: Path, target: Path | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)


def _toolkit(root: Path) -> Path:
    """A CANN-toolkit-shaped tree (see the module docstring) whose cmake modules are asc-devkit's own."""
    home = root / "latest"
    plat = home / f"{ARCH}-linux"
    for d in ("bin", "include", "lib64/cmake"):
        (plat / d).mkdir(parents=True)
    _link(plat / "tikcpp" / "ascendc_kernel_cmake", DEVKIT / "cmake" / "asc")
    _link(plat / "lib64" / "cmake" / "asc-config.cmake", DEVKIT / "cmake" / "asc" / "asc-config.cmake")
    _link(plat / "asc" / "include", DEVKIT / "include")
    _link(plat / "asc" / "impl", DEVKIT / "impl")
    for link in ("compiler/tikcpp", "tools/tikcpp"):
        _link(home / link, Path("..") / f"{ARCH}-linux" / "tikcpp")
    _link(home / "compiler" / "asc", Path("..") / f"{ARCH}-linux" / "asc")
    for d in ("bin", "include", "lib64"):
        _link(home / d, Path(f"{ARCH}-linux") / d)
    (plat / "lib64" / "libascendc_runtime.a").write_bytes(b"!<arch>\n")  # an empty archive
    (plat / "ascend_toolkit_install.info").write_text(f"package_name=Ascend-cann-toolkit\nversion={VERSION}\n"
                                                      f"arch={ARCH}\n")
    return home


@pytest.fixture(scope="module")
def toolkit(tmp_path_factory) -> Path:
    return _toolkit(tmp_path_factory.mktemp("cann"))


def _env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("ASCEND_TOOLKIT_HOME", cann_backend.FLOW_ENV)}
    return dict(env, ASCEND_HOME_PATH=str(home), PYTHONDONTWRITEBYTECODE="1")


def _configure(home: Path, work: Path, flow: str, group: str) -> tuple[subprocess.CompletedProcess, Path, str]:
    """Render rmsnorm's CMake project for (flow, group) and run cmake's configure step as build_with_cmake does."""
    src, bld = work / "src", work / "build"
    src.mkdir(parents=True)
    files = cann_backend.render_project(load_project(RMSNORM), ext_id=EXT_ID, glibcxx_abi=1, torch_mm=(2, 13),
                                        flow=flow, arch_group=group)
    for name, text in files.items():
        (src / name).write_text(text)
    args = cann_backend.cmake_args(RMSNORM, cann_home=str(home), torch_dir=str(work / "torch"),
                                   torch_npu_dir=str(work / "torch_npu"), python_include=str(work / "py"))
    if flow == "asc":
        args.append(f"-DASC_DIR={cann_backend.probe_flows(str(home))['asc']}")
    r = subprocess.run(["cmake", "-S", str(src), "-B", str(bld), *args], capture_output=True, text=True,
                       env=_env(home), timeout=300)
    return r, bld, files["CMakeLists.txt"]


def test_probe_finds_both_flows_in_the_devkit_layout(toolkit, tmp_path):
    assert cann_backend.probe_flows(str(toolkit)) == {
        "ascendc": str(toolkit / "tools/tikcpp/ascendc_kernel_cmake"),
        "asc": str(toolkit / "compiler/tikcpp/ascendc_kernel_cmake")}
    assert cann_backend.toolkit_version(str(toolkit)) == VERSION
    # Without the compiler/tools links: asc-config.cmake where asc-devkit installs it, <arch>-linux/lib64/cmake.
    bare = _toolkit(tmp_path)
    for link in ("compiler", "tools"):
        shutil.rmtree(bare / link)
    flows = cann_backend.probe_flows(str(bare))
    assert list(flows) == ["asc"]
    assert flows["asc"] in (str(bare / "lib64/cmake"), str(bare / f"{ARCH}-linux/lib64/cmake"))


def _defined_functions(*modules: Path) -> dict[str, str]:
    """function name -> its parameter list, for every function() of the given devkit modules."""
    found = {}
    for m in modules:
        for name, params in re.findall(r"^function\((\w+)\s*([^)]*)\)", m.read_text(), re.M):
            found[name] = params
    return found


def _assert_devkit_functions(cmakelists: str, *modules: Path) -> None:
    """Every ascendc_* call of our CMakeLists names a devkit function, with a (target, STATIC|scope) head."""
    defined = _defined_functions(*modules)
    calls = re.findall(r"^(ascendc_\w+)\((\S+) (\S+)", cmakelists, re.M)
    assert calls, "our CMakeLists calls no ascendc_* function"
    for name, _target, second in calls:
        assert name in defined, f"{name}() is not defined by {[str(m) for m in modules]}"
        assert second in ("STATIC", "PRIVATE"), f"{name}(... {second}): unexpected second argument"


@pytest.mark.parametrize("group", ["c220", "m200"])
def test_ascendc_flow_configures_through_devkit_modules_until_bisheng(toolkit, tmp_path, group):
    r, bld, text = _configure(toolkit, tmp_path, "ascendc", group)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "CMake Error" not in out and "CMake Warning" not in out, out
    assert "-- Generating done" in r.stdout
    _assert_devkit_functions(text, DEVKIT / "cmake/asc/legacy_modules/function.cmake")
    # The build: the kernel's precompile sub-project configures, then needs the closed compiler.
    b = subprocess.run(["cmake", "--build", str(bld), "--target", f"{KERNEL_TARGET}_precompile"], capture_output=True,
                       text=True, env=_env(toolkit), timeout=300)
    out = b.stdout + b.stderr
    assert b.returncode != 0, out
    assert f"Performing build step for '{KERNEL_TARGET}_precompile'" in out, out
    bisheng = toolkit / "ascendc_devkit" / "ccec_compiler" / "bin" / "bisheng"
    assert f"{bisheng}: No such file or directory" in out, out
    assert "Error 127" in out and "CMake Error" not in out, out
    flags = (bld / f"{KERNEL_TARGET}_precompile-prefix/src/{KERNEL_TARGET}_precompile-build"
             / "CMakeFiles/precompile_obj.dir/flags.make").read_text()
    for d in ("CANN_KERNEL", "KB_CANN_FLOW_ASCENDC", f"KB_CANN_ARCH_{group.upper()}", "_GLIBCXX_USE_CXX11_ABI=1"):
        assert f"-D{d}" in flags, flags  # our ascendc_compile_definitions reached the device compile


@pytest.mark.parametrize("group", ["c220", "m200"])
def test_asc_flow_configures_through_devkit_modules_until_bisheng(toolkit, tmp_path, group):
    r, _, text = _configure(toolkit, tmp_path, "asc", group)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    # find_package(ASC) passed; the first error is the ASC compiler lookup inside our project() call.
    first = r.stderr.split("CMake Error")[1]
    assert first.startswith(" at ") and "asc_modules/CMakeDetermineASCCompiler.cmake" in first, r.stderr
    assert "ASC compiler not found or does not exist: 'CMAKE_ASC_COMPILER-NOTFOUND'" in first, r.stderr
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if ln.startswith("project("))
    assert f"CMakeLists.txt:{line} (project)" in first, r.stderr
    assert f"project({EXT_ID} LANGUAGES ASC CXX)" in text
    _assert_devkit_functions(text, DEVKIT / "cmake/asc/asc_modules/FindASC.cmake")
    assert "STATIC" in re.search(r"set\(LIB_SUPPORT_TYPES ([^)]*)\)",
                                 (DEVKIT / "cmake/asc/asc_modules/FindASC.cmake").read_text()).group(1)
