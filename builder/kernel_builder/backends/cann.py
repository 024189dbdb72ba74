"""The CANN (Ascend C) backend: soc-versions -> arch groups, the cannXY variant, and a CMake project.

Ascend C kernels are not compiled by cpp_extension: CANN ships its own compiler driven by CMake. Two flows:

- "ascendc" (CANN 8.x): `include(<cann>/tools/tikcpp/ascendc_kernel_cmake/ascendc.cmake)`,
  `ascendc_library(...)` with one `SOC_VERSION` per configure; the host code launches kernel `k` through
  the generated `aclrtlaunch_k.h` (`ACLRT_LAUNCH_KERNEL(k)(blocks, stream, args...)`).
- "asc" (ASC language): `find_package(ASC)`, `project(x LANGUAGES ASC CXX)`, `.asc` sources compiled with
  `--npu-arch=dav-XXXX`, launched `k<<<blocks, nullptr, stream>>>(...)`.

Either way the torch binding (the project's [torch] sources) is compiled as C++ against torch's and
torch_npu's headers with torch's own `_GLIBCXX_USE_CXX11_ABI` value, and linked with the kernels into one
`<id>.abi3.so`. The rendered CMakeLists holds no host paths: `cmake_args()` supplies them as -D cache
variables, so a render is reproducible (and golden-tested) anywhere.

Building needs a CANN toolkit, which kernel-builder does not drive yet: config keeps cann kernels
"not built yet"; this module plans and renders.

The cann kernel table (ours; Hugging Face's parser rejects any `backend = "cann"` kernel table):

    [kernel.add_cann]
    backend = "cann"                         # "cann" must be in general.backends
    depends = ["torch"]
    src = ["add_cann/add_custom.cpp", "add_cann/tiling.h"]   # .cpp (CANN 8.x), .asc (ASC language), .h, .hpp
    include = ["add_cann"]                   # optional
    soc-versions = ["Ascend910B1", "Ascend310P3"]   # optional, non-empty; default ["Ascend910B1"]
    ascendc-flags = ["-O2"]                  # optional: Ascend C compiler options
    cxx-flags = ["-Wall"]                    # optional: also handed to the Ascend C compiler

soc-versions are validated against cann_versions.KNOWN_SOCS and grouped by arch (c220 = dav-2201,
m200 = dav-2002, m300 = dav-3002): one compile per group; metadata backend.archs lists the dav-* names.
The variant is `torch<XY>-cxx11-cann<XY>-<cpu>-linux`; pure-Python NPU kernels go under `torch-npu`.
"""

from __future__ import annotations

import os
import shutil
from importlib.util import find_spec
from pathlib import Path, PurePosixPath

from ..cann_versions import (DEFAULT_SOC_VERSIONS, CannVersionError, cann_mm, compiled_variant,
                             find_install_info, group_socs, npu_arch, read_install_info)
from ..config import Kernel, Project
from ..host import Host
from ..render import render
from ..variants import Variant

FLOWS = ("ascendc", "asc")
ASC_SUFFIXES = {".asc"}
KERNEL_SOURCE_SUFFIXES = {".cpp", ".asc"}
DEFAULT_ASCEND_HOME = "/usr/local/Ascend/ascend-toolkit/latest"


def ascend_home() -> str | None:
    """The CANN toolkit: $ASCEND_HOME_PATH / $ASCEND_TOOLKIT_HOME (set by set_env.sh), else the default
    install location when it exists."""
    for var in ("ASCEND_HOME_PATH", "ASCEND_TOOLKIT_HOME"):
        if os.environ.get(var):
            return os.environ[var]
    return DEFAULT_ASCEND_HOME if Path(DEFAULT_ASCEND_HOME).is_dir() else None


def toolkit_version(home: str | None = None) -> str:
    """The CANN version string torch_npu would report for this toolkit ("not known" when none)."""
    home = home if home is not None else ascend_home()
    info = find_install_info(home) if home else None
    if info is None:
        return "not known"
    return read_install_info(info.read_text(encoding="utf-8", errors="replace"))


def soc_versions(kernel: Kernel) -> tuple[str, ...]:
    return tuple(kernel.other.get("soc-versions", ())) or DEFAULT_SOC_VERSIONS


def kernel_arch_groups(project: Project) -> dict[str, tuple[str, ...]]:
    """Arch group -> SoCs over every cann kernel of the project (one compile per group)."""
    socs: list[str] = []
    for k in project.kernels_for("cann"):
        socs += soc_versions(k)
    return group_socs(socs)


def flow_for(project: Project) -> str:
    """"asc" when any cann kernel has .asc sources (only the ASC language compiles them), else "ascendc"."""
    for k in project.kernels_for("cann"):
        if any(PurePosixPath(s).suffix in ASC_SUFFIXES for s in k.src):
            return "asc"
    return "ascendc"


def cxx_standard(torch_mm: tuple[int, int]) -> int:
    """What cpp_extension uses: C++17 up to torch 2.11, C++20 from 2.12 (torch's headers need it)."""
    return 20 if torch_mm >= (2, 12) else 17


class CANN:
    family = "cann"

    def __init__(self, cann_version: str | None = None):
        self._cann_version = cann_version  # None: read from the toolkit

    @property
    def cann_version(self) -> str:
        return self._cann_version if self._cann_version is not None else toolkit_version()

    def unavailable(self, host: Host) -> str | None:
        home = ascend_home()
        if home is None:
            return "no CANN toolkit (set ASCEND_HOME_PATH: source <cann>/set_env.sh)"
        try:
            cann_mm(self.cann_version)
        except CannVersionError as e:
            return str(e)
        if find_spec("torch_npu") is None:
            return "torch_npu is not installed in the build environment"
        return "backend cann is not built by kernel-builder yet (CMake projects are rendered, not built)"

    def variant(self, host: Host) -> Variant:
        return compiled_variant(host.torch_mm, host.cxx11_abi if host.os == "linux" else None,
                                self.cann_version, host.arch, host.os)

    def defines(self) -> list[str]:
        return ["-DCANN_KERNEL"]

    def kernel_flags(self, project: Project, kernel: Kernel, host: Host, options: dict) -> dict:
        return {"cxx": list(kernel.cxx_flags), "nvcc": [], "ascendc": list(kernel.other.get("ascendc-flags", ()))}

    def archs(self, project: Project, host: Host, options: dict) -> list[str] | None:
        """metadata.json backend.archs: the ASC npu-arch of every arch group built ("dav-2201", ...)."""
        return sorted(npu_arch(a) for a in kernel_arch_groups(project))

    def fallback_include_dirs(self, host: Host) -> list[str]:
        spec = find_spec("torch_npu")
        if spec is None or not spec.origin:
            return []
        inc = Path(spec.origin).parent / "include"
        return [str(inc)] if inc.is_dir() else []

    def toolchain(self, host: Host) -> str:
        from .cpu import cxx_version

        cmake = shutil.which("cmake") or "cmake: not found"
        return f"{cxx_version()} | CANN {self.cann_version} | {ascend_home()} | {cmake}"


def render_project(project: Project, *, ext_id: str, glibcxx_abi: int, torch_mm: tuple[int, int],
                   flow: str | None = None, arch_group: str | None = None) -> dict[str, str]:
    """Render the CMake project building `<ext_id>.abi3.so` from the project's cann kernels (one arch
    group) and its [torch] binding. Returns {relative file name: text}.

    `glibcxx_abi` is torch's own `torch._C._GLIBCXX_USE_CXX11_ABI` (0 or 1), passed through, never assumed.
    Raises ValueError for what cannot be built as one .so: no cann kernels, several arch groups without
    `arch_group` naming one (CANN compiles one arch per configure and the variant name has no room for it),
    or .asc sources in the ascendc flow."""
    if glibcxx_abi not in (0, 1):
        raise ValueError(f"glibcxx_abi must be torch's _GLIBCXX_USE_CXX11_ABI, 0 or 1 (got {glibcxx_abi!r})")
    kernels = project.kernels_for("cann")
    if not kernels:
        raise ValueError(f"{project.file}: no [kernel.*] table with backend = \"cann\"")
    if project.torch is None:
        raise ValueError(f"{project.file}: cann kernels need a [torch] binding")
    flow = flow or flow_for(project)
    if flow not in FLOWS:
        raise ValueError(f"unknown CANN build flow {flow!r}; known: {', '.join(FLOWS)}")
    groups = kernel_arch_groups(project)
    if arch_group is None:
        if len(groups) != 1:
            raise ValueError(f"{project.file}: cann kernels span arch groups {sorted(groups)}; render one at a time "
                             "(arch_group=...): CANN compiles one arch per configure")
        arch_group = next(iter(groups))
    if arch_group not in groups:
        raise ValueError(f"arch group {arch_group!r} is not targeted by any cann kernel (targeted: {sorted(groups)})")

    kernel_ctx = []
    for k in kernels:
        if set(soc_versions(k)) & set(groups[arch_group]) == set():
            continue  # this kernel does not target the group being built
        sources = [s for s in k.src if PurePosixPath(s).suffix in KERNEL_SOURCE_SUFFIXES]
        if flow == "ascendc" and any(PurePosixPath(s).suffix in ASC_SUFFIXES for s in sources):
            raise ValueError(f"{project.file}: [kernel.{k.name}] has .asc sources, which only the asc flow compiles")
        kernel_ctx.append({
            "name": k.name, "target": f"kb_{k.name}", "sources": sources,
            "include": list(k.include), "cxx_flags": list(k.cxx_flags),
            "ascendc_flags": list(k.other.get("ascendc-flags", ())),
        })
    binding_sources = [s for s in project.torch.src if PurePosixPath(s).suffix in {".cpp", ".cc", ".cxx"}]
    wrappers = {f"kb_binding_{i}.cpp": src for i, src in enumerate(binding_sources)}
    context = dict(
        name=project.general.name, ext_id=ext_id, flow=flow, arch_group=arch_group,
        soc_version=groups[arch_group][0], socs=list(groups[arch_group]), npu_arch=npu_arch(arch_group),
        kernels=kernel_ctx, wrappers=list(wrappers), torch_include=list(project.torch.include),
        torch_cxx_flags=list(project.torch.cxx_flags), glibcxx_abi=glibcxx_abi, cxx_std=cxx_standard(torch_mm),
    )
    files = {"CMakeLists.txt": render(f"cann/CMakeLists.{flow}.txt.j2", **context),
             "registration.h": render("registration.h.j2"), "glibc_compat.cpp": render("glibc_compat.cpp.j2")}
    for i, (wrapper, src) in enumerate(wrappers.items()):
        # Wrappers `#include "<src relative to the project>"`, found through -I${KB_SOURCE_DIR}.
        files[wrapper] = render("binding_entry.cpp.j2", id=ext_id, source=src, pyinit=(i == 0))
    return files


def render_for_host(project: Project, host: Host, ext_id: str, flow: str | None = None,
                    arch_group: str | None = None) -> dict[str, str]:
    """render_project with this host's torch: its C++ ABI (compiled_with_cxx11_abi, the value torch's
    own headers were built with) and its C++ standard."""
    return render_project(project, ext_id=ext_id, glibcxx_abi=int(host.cxx11_abi), torch_mm=host.torch_mm,
                          flow=flow, arch_group=arch_group)


def cmake_args(project_root: str | os.PathLike, *, cann_home: str, torch_dir: str, torch_npu_dir: str,
               python_include: str, build_type: str = "Release") -> list[str]:
    """The host-specific -D values the rendered CMakeLists expects (kept out of the render)."""
    return [f"-DKB_SOURCE_DIR={Path(project_root)}", f"-DASCEND_CANN_PACKAGE_PATH={cann_home}",
            f"-DKB_TORCH_DIR={torch_dir}", f"-DKB_TORCH_NPU_DIR={torch_npu_dir}",
            f"-DKB_PYTHON_INCLUDE={python_include}", f"-DCMAKE_BUILD_TYPE={build_type}"]
