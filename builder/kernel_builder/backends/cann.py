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

Building needs a CANN toolkit (and torch_npu): without one the backend reports itself unavailable and the
variant is skipped with that reason; `build --all` builds it in a CANN image of the matrix.

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

import json
import os
import shutil
import sys
import sysconfig
from importlib.util import find_spec
from pathlib import Path, PurePosixPath

from .. import settings
from ..build import cache, staging
from ..build.host import Host, cxx_standard, cxx_version
from ..build.render import render
from ..errors import CompileError, EnvironmentProblem, UsageError
from ..project.model import Kernel, Project
from ..project.options import BuildOptions
from ..tools import first_error, run_logged
from ..variants import Variant
from .base import CppExtensionBackend
from .cann_versions import (CANN_SRC_SUFFIXES, DEFAULT_SOC_VERSIONS, KNOWN_SOCS, SOC_ARCHS, CannVersionError,
                             cann_mm, compiled_variant, find_install_info, group_socs, npu_arch, read_install_info)

FLOWS = ("ascendc", "asc")
ASC_SUFFIXES = {".asc"}
KERNEL_SOURCE_SUFFIXES = {".cpp", ".asc"}
DEFAULT_ASCEND_HOME = "/usr/local/Ascend/ascend-toolkit/latest"


def ascend_home() -> str | None:
    """The CANN toolkit: $ASCEND_HOME_PATH / $ASCEND_TOOLKIT_HOME (set by set_env.sh), else the default
    install location when it exists."""
    given = settings.current().ascend_home
    if given:
        return given
    return DEFAULT_ASCEND_HOME if Path(DEFAULT_ASCEND_HOME).is_dir() else None


def toolkit_version(home: str | None = None) -> str:
    """The CANN version string torch_npu would report for this toolkit ("not known" when none)."""
    home = home if home is not None else ascend_home()
    info = find_install_info(home) if home else None
    if info is None:
        return "not known"
    return read_install_info(info.read_text(encoding="utf-8", errors="replace"))


def soc_versions(kernel: Kernel) -> tuple[str, ...]:
    return tuple(kernel.options.get("soc-versions", ())) or DEFAULT_SOC_VERSIONS


def kernel_arch_groups(project: Project) -> dict[str, tuple[str, ...]]:
    """Arch group -> SoCs over every cann kernel of the project (one compile per group)."""
    socs: list[str] = []
    for k in project.kernels_for("cann"):
        socs += soc_versions(k)
    return group_socs(socs)


def check_uniform_groups(project: Project) -> None:
    """With several arch groups one binding links against each group's kernel library, so every cann kernel
    must target every group (else the binding would reference kernels a group lacks). UsageError otherwise."""
    groups = kernel_arch_groups(project)
    if len(groups) < 2:
        return
    for k in project.kernels_for("cann"):
        mine = set(group_socs(soc_versions(k)))
        if mine != set(groups):
            raise UsageError(f"{project.file}: kernel.{k.name}.soc-versions: targets arch groups {sorted(mine)} but the "
                             f"project's cann kernels span {sorted(groups)}; with several arch groups every cann kernel "
                             f"must name SoCs of all of them (got {list(soc_versions(k))})")


def flow_for(project: Project) -> str:
    """"asc" when any cann kernel has .asc sources (only the ASC language compiles them), else "ascendc"."""
    for k in project.kernels_for("cann"):
        if any(PurePosixPath(s).suffix in ASC_SUFFIXES for s in k.src):
            return "asc"
    return "ascendc"


ASCENDC_CMAKE_DIRS = ("tools/tikcpp/ascendc_kernel_cmake", "compiler/tikcpp/ascendc_kernel_cmake",
                      "ascendc_devkit/tikcpp/samples/cmake")  # where CANN releases put ascendc.cmake
ASC_CONFIG_NAMES = ("asc-config.cmake", "ASCConfig.cmake")  # what find_package(ASC) looks for
ASC_CONFIG_DIRS = ("compiler/tikcpp/ascendc_kernel_cmake", "tools/tikcpp/ascendc_kernel_cmake", "lib64/cmake/asc",
                   "lib64/cmake/ASC", "lib/cmake/asc", "lib/cmake/ASC", "cmake/asc", "share/cmake/asc",
                   "lib64/cmake")  # asc-devkit installs it in <arch>-linux/lib64/cmake (+ a link in the first)
FLOW_ENV = "KERNEL_BUILDER_CANN_FLOW"  # "asc" or "ascendc": overrides the probe


def _toolkit_roots(home: str) -> list[Path]:
    """The toolkit and its per-architecture tree (<home>/<machine>-linux), where CANN keeps most files."""
    import platform

    roots = [Path(home)]
    arch_dir = Path(home) / f"{platform.machine()}-linux"
    if arch_dir.is_dir():
        roots.append(arch_dir)
    return roots


def probe_flows(home: str | None) -> dict[str, str]:
    """The build flows this CANN toolkit supports: {"asc": dir of ASC's CMake package config,
    "ascendc": dir of ascendc.cmake}. Probed on disk, never assumed from the version."""
    if not home or not Path(home).is_dir():
        return {}
    found: dict[str, str] = {}
    for root in _toolkit_roots(home):
        for rel in ASCENDC_CMAKE_DIRS:
            if "ascendc" not in found and (root / rel / "ascendc.cmake").is_file():
                found["ascendc"] = str(root / rel)
        for rel in ASC_CONFIG_DIRS:
            if "asc" not in found and any((root / rel / n).is_file() for n in ASC_CONFIG_NAMES):
                found["asc"] = str(root / rel)
    if "asc" not in found:  # an unusual layout: a bounded search for the package config
        for root in _toolkit_roots(home):
            base = len(root.parts)
            for dirpath, dirnames, filenames in os.walk(root):
                if len(Path(dirpath).parts) - base >= 5:
                    dirnames[:] = []
                if any(n in filenames for n in ASC_CONFIG_NAMES):
                    found["asc"] = dirpath
                    break
            if "asc" in found:
                break
    return found


def choose_flow(project: Project, flows: dict[str, str]) -> str:
    """The flow to build `project` with on a toolkit offering `flows` (raises EnvironmentProblem when none
    fits): .asc sources need the ASC language; otherwise ASC when the toolkit has it, else ascendc.cmake.
    KERNEL_BUILDER_CANN_FLOW=asc|ascendc overrides the preference (not the toolkit's abilities)."""
    wanted = settings.current().cann_flow
    if wanted is not None and wanted not in FLOWS:
        raise EnvironmentProblem(f"{FLOW_ENV}={wanted}: unknown CANN build flow; known: {', '.join(FLOWS)}")
    if flow_for(project) == "asc":
        if wanted == "ascendc":
            raise EnvironmentProblem(f"{project.file}: .asc sources need the ASC language flow, but {FLOW_ENV}=ascendc")
        wanted = "asc"
    if wanted is None:
        wanted = "asc" if "asc" in flows else "ascendc"
    if wanted not in flows:
        what = {"asc": "ASC's CMake package (find_package(ASC): asc-config.cmake)",
                "ascendc": "ascendc.cmake (the CANN 8.x kernel-launch flow)"}[wanted]
        raise EnvironmentProblem(f"the CANN toolkit at {ascend_home()} has no {what}; it offers: "
                                 f"{', '.join(sorted(flows)) or 'neither flow'}")
    return wanted


def torch_npu_version() -> str | None:
    from importlib import metadata

    for dist in ("torch-npu", "torch_npu"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


class CANN(CppExtensionBackend):
    family = "cann"
    kernel_keys = frozenset({"soc-versions", "ascendc-flags"})
    row_keys = frozenset({"cann", "torch-npu"})
    no_source_note = "names no Ascend C source (.cpp, .asc) to compile (only headers): a header-only kernel, nothing compiled"

    @staticmethod
    def _version_for(host: Host | None) -> str:
        """A build-matrix row (host.probed False) names the CANN version of its image; on this machine it
        is what torch_npu would read from the toolkit."""
        return (host.cann_version if host is not None else None) or toolkit_version()

    # --- build.toml ---
    def source_problem(self, rel: str) -> str | None:
        if PurePosixPath(rel).suffix not in CANN_SRC_SUFFIXES:
            return "a cann kernel compiles Ascend C sources (.cpp, .asc) and headers (.h, .hpp) only"
        return None

    def compiles(self, rel: str) -> bool:
        return PurePosixPath(rel).suffix in KERNEL_SOURCE_SUFFIXES

    def read_kernel(self, reader, prefix: str, table: dict) -> dict:
        socs = reader.str_list(table, "soc-versions", prefix, non_empty=True, unique=True)
        for soc in socs:
            if soc not in KNOWN_SOCS:
                reader.fail(f"{prefix}.soc-versions", f"unknown Ascend SoC; known: {', '.join(KNOWN_SOCS)}", soc)
        options = {"ascendc-flags": reader.str_list(table, "ascendc-flags", prefix)} if "ascendc-flags" in table else {}
        if "soc-versions" in table:
            options["soc-versions"] = socs
        return dict(sorted(options.items()))

    # --- matrix.toml ---
    def read_row(self, fail, row: dict, image) -> dict:
        cann, npu = row.get("cann"), row.get("torch-npu")
        if not isinstance(cann, str):
            fail("cann", "a cann row names its toolkit's version, e.g. \"8.5.0\"")
        try:
            cann_mm(cann)
        except CannVersionError as e:
            fail("cann", str(e))
        if not isinstance(npu, str) or not any(p.startswith(f"torch-npu=={npu}") for p in image.pip):
            fail("torch-npu", f"must name the torch-npu that image {image.name} installs (got {npu!r})")
        return {"cann_version": cann}

    # --- hosts and variants ---
    def can_load(self, variant: Variant, host: Host) -> bool:
        return False  # needs torch_npu and an NPU: never probed by `check`

    def unavailable(self, host: Host) -> str | None:
        if not host.probed:  # a build-matrix row: its image has the toolkit; only its version is checked here
            version = host.cann_version
            if not version:
                return "the build-matrix row names no CANN version"
            try:
                cann_mm(version)
            except CannVersionError as e:
                return str(e)
            return None
        if host.os != "linux":
            return f"CANN builds need Linux (this host is {host.os})"
        home = ascend_home()
        if home is None:
            return "CANN toolkit not found (ASCEND_HOME_PATH unset; source <cann>/set_env.sh)"
        if not Path(home).is_dir():
            return f"CANN toolkit not found (ASCEND_HOME_PATH={home} is not a directory)"
        try:
            cann_mm(self._version_for(host))
        except CannVersionError as e:
            return str(e)
        if not probe_flows(home):
            return (f"the CANN toolkit at {home} has neither ASC's CMake package (asc-config.cmake) nor "
                    "ascendc.cmake: it cannot compile Ascend C")
        if find_spec("torch_npu") is None:
            return "torch_npu is not installed in the build environment (pip install torch-npu)"
        if shutil.which("cmake") is None:
            return "cmake not found (pip install cmake)"
        return None

    def variant(self, host: Host) -> Variant:
        return compiled_variant(host.torch_mm, host.cxx11_abi if host.os == "linux" else None,
                                self._version_for(host), host.arch, host.os)

    def defines(self) -> list[str]:
        return ["-DCANN_KERNEL"]

    def kernel_flags(self, project: Project, kernel: Kernel, host: Host, options: BuildOptions) -> dict:
        return {"cxx": list(kernel.cxx_flags), "nvcc": [], "ascendc": list(kernel.options.get("ascendc-flags", ()))}

    def archs(self, project: Project, host: Host, options: BuildOptions) -> list[str] | None:
        """metadata.json backend.archs: the ASC npu-arch of every arch group built ("dav-2201", ...)."""
        return sorted(npu_arch(a) for a in kernel_arch_groups(project))

    def fallback_include_dirs(self, host: Host) -> list[str]:
        spec = find_spec("torch_npu")
        if spec is None or not spec.origin:
            return []
        inc = Path(spec.origin).parent / "include"
        return [str(inc)] if inc.is_dir() else []

    def toolchain(self, host: Host) -> str:
        cmake = shutil.which("cmake") or "cmake: not found"
        home = ascend_home()
        flows = probe_flows(home)
        return (f"{cxx_version()} | CANN {self._version_for(host)} | {home} | flows {sorted(flows.items())} | "
                f"{FLOW_ENV}={settings.current().cann_flow or ''} | torch_npu {torch_npu_version()} | {cmake}")

    # --- doing ---
    def build_extension(self, plan, host: Host, verbose: bool = False) -> Path:
        """Build the variant's extension with CMake (see build_with_cmake); returns the staged .abi3.so."""
        return build_with_cmake(plan, host, verbose)

    def variant_extras(self, plan, so: Path) -> dict[str, bytes]:
        """Files beside the extension: with several arch groups, one kernel library per group and an
        `_ops.py` that loads the one matching the NPU before the extension."""
        return extra_variant_files(plan, so)

    def provenance_extra(self, plan) -> dict:
        """metadata.json provenance.cann: what the kernels were compiled with (the loader ignores it)."""
        try:
            return {"cann": json.loads((plan.workdir / BUILD_INFO).read_text())}
        except (OSError, ValueError):
            return {"cann": {"version": self._version_for(None), "torch-npu": torch_npu_version()}}


BUILD_INFO = "cann-build.json"  # in the variant's work dir: what build_with_cmake compiled with


def _one_arch_group(project: Project, groups: dict, arch_group: str | None) -> str:
    """The arch group a render builds: the one asked for, else the only one there is."""
    if arch_group is None:
        if len(groups) != 1:
            raise ValueError(f"{project.file}: cann kernels span arch groups {sorted(groups)}; render one at a time "
                             "(arch_group=...): CANN compiles one arch per configure")
        arch_group = next(iter(groups))
    if arch_group not in groups:
        raise ValueError(f"arch group {arch_group!r} is not targeted by any cann kernel (targeted: {sorted(groups)})")
    return arch_group


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
    arch_group = _one_arch_group(project, groups, arch_group)
    kernel_ctx = []
    for k in kernels:
        if set(soc_versions(k)) & set(groups[arch_group]) == set():
            continue  # this kernel does not target the group being built
        sources = [s for s in k.src if PurePosixPath(s).suffix in KERNEL_SOURCE_SUFFIXES]
        if not sources:
            continue  # a header-only kernel (only used through include): no library of its own
        if flow == "ascendc" and any(PurePosixPath(s).suffix in ASC_SUFFIXES for s in sources):
            raise ValueError(f"{project.file}: [kernel.{k.name}] has .asc sources, which only the asc flow compiles")
        kernel_ctx.append({
            "name": k.name, "target": f"kb_{k.name}", "sources": sources,
            "include": list(k.include), "cxx_flags": list(k.cxx_flags),
            "ascendc_flags": list(k.options.get("ascendc-flags", ())),
        })
    binding_sources = [s for s in project.torch.src if PurePosixPath(s).suffix in {".cpp", ".cc", ".cxx"}]
    wrappers = {f"kb_binding_{i}.cpp": src for i, src in enumerate(binding_sources)}
    split = len(groups) > 1  # one kernel library per group, chosen at import time (see _ops.py)
    context = dict(
        name=project.general.name, ext_id=ext_id, flow=flow, arch_group=arch_group, split=split,
        soc_version=groups[arch_group][0], socs=list(groups[arch_group]), npu_arch=npu_arch(arch_group),
        kernels=kernel_ctx, wrappers=list(wrappers), torch_include=list(project.torch.include),
        torch_cxx_flags=list(project.torch.cxx_flags), glibcxx_abi=glibcxx_abi, cxx_std=cxx_standard(torch_mm),
    )
    files = {"CMakeLists.txt": render(f"cann/CMakeLists.{flow}.txt.j2", **context),
             "registration.h": render("registration.h.j2"), "glibc_compat.cpp": render("glibc_compat.cpp.j2"),
             "module_init.cpp": render("module_init.cpp.j2", id=ext_id)}
    if split:
        files["kb_kernels_anchor.cpp"] = ("// Generated by kernel-builder: the C++ anchor of the kernel library of arch group "
                                          f"{arch_group};\n// its code comes from the Ascend C static libraries linked whole.\n")
    for wrapper, src in wrappers.items():
        # Wrappers `#include "<src relative to the project>"`, found through -I${KB_SOURCE_DIR}.
        files[wrapper] = render("binding_entry.cpp.j2", id=ext_id, source=src)
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


# --------------------------------------------------------------------------------------------------
# The build: configure + build the rendered CMake project once per arch group
# --------------------------------------------------------------------------------------------------

def _python_paths() -> tuple[str, str, str]:
    """(torch package dir, torch_npu package dir, Python include dir) of the build Python."""
    dirs = []
    for mod in ("torch", "torch_npu"):
        spec = find_spec(mod)
        if spec is None or not spec.origin:
            raise EnvironmentProblem(f"{mod} is not installed for {sys.executable}")
        dirs.append(str(Path(spec.origin).parent))
    return dirs[0], dirs[1], sysconfig.get_paths()["include"]


def build_with_cmake(plan, host: Host, verbose: bool = False) -> Path:
    """Compile a cann variant: render the CMake project for each arch group into the work dir, configure and
    build it there (incremental: unchanged files keep their mtimes, CMake rebuilds what changed), and stage
    `<id>.abi3.so` (plus `<id>_<group>.so` per group when there are several). Nothing is written into the
    kernel project. Raises EnvironmentProblem (no toolkit, no flow) or CompileError (first error + log)."""
    project = plan.project
    check_uniform_groups(project)
    home = ascend_home()
    if home is None:
        raise EnvironmentProblem("CANN toolkit not found (ASCEND_HOME_PATH unset; source <cann>/set_env.sh)")
    flows = probe_flows(home)
    flow = choose_flow(project, flows)
    torch_dir, npu_dir, py_inc = _python_paths()
    if shutil.which("cmake") is None:
        raise EnvironmentProblem("cmake not found (pip install cmake)")
    groups = kernel_arch_groups(project)
    split = len(groups) > 1
    stage = staging.clear_stage(plan)
    so = stage / f"{plan.kernel_id}.abi3.so"
    env = dict(os.environ, ASCEND_HOME_PATH=home)
    jobs = str(max(1, os.cpu_count() or 1))
    log_path = plan.workdir / "build.log"
    built: dict[str, Path] = {}
    with open(log_path, "w") as log:
        for group in groups:
            src = plan.workdir / "cmake" / group / "src"
            bld = plan.workdir / "cmake" / group / "build"
            files = render_for_host(project, host, plan.kernel_id, flow=flow, arch_group=group)
            staging.write_if_changed(src, files)
            args = cmake_args(project.root, cann_home=home, torch_dir=torch_dir, torch_npu_dir=npu_dir,
                              python_include=py_inc)
            if flow == "asc":
                args.append(f"-DASC_DIR={flows['asc']}")
            for cmd in (["cmake", "-S", str(src), "-B", str(bld), *args],
                        ["cmake", "--build", str(bld), "--parallel", jobs]):
                rc = run_logged(cmd, log, f"{plan.variant}: {flow} build of {group}", env=env, verbose=verbose)
                if rc != 0:
                    log.flush()
                    raise CompileError(f"{plan.variant}: {flow} build of arch group {group} failed: "
                                       f"{first_error(log_path, rc)} (full log: {log_path})")
            ext = bld / f"{plan.kernel_id}.abi3.so"
            if not ext.is_file():
                raise CompileError(f"{plan.variant}: the {group} build made no {ext.name} (full log: {log_path})")
            built.setdefault("ext", ext)  # the binding is the same for every group: keep the first
            if split:
                lib = bld / f"{plan.kernel_id}_{group}.so"
                if not lib.is_file():
                    raise CompileError(f"{plan.variant}: the {group} build made no {lib.name} (full log: {log_path})")
                built[group] = lib
    shutil.copy2(built.pop("ext"), so)
    for group, lib in built.items():
        shutil.copy2(lib, stage / lib.name)
    info = {"version": toolkit_version(home), "torch-npu": torch_npu_version(), "flow": flow,
            "arch-groups": {g: list(socs) for g, socs in groups.items()}}
    cache.write_atomic(plan.workdir / BUILD_INFO, json.dumps(info))
    return staging.finish(plan, so, "CANN's CMake project")


def soc_group_table(groups) -> dict[str, str]:
    """SoC -> arch group for every known SoC of the groups built (the import-time dispatch table)."""
    return {soc: arch for soc, (arch, _) in SOC_ARCHS.items() if arch in groups}


def extra_variant_files(plan, so: Path) -> dict[str, bytes]:
    """The per-group kernel libraries staged beside `so` and, when there are any, the `_ops.py` that picks one."""
    libs = {p.name: p.read_bytes() for p in sorted(so.parent.glob(f"{plan.kernel_id}_*.so"))}
    if not libs:
        return {}
    groups = {name[len(plan.kernel_id) + 1:-3]: name for name in libs}
    libs["_ops.py"] = render("cann/_ops.py.j2", id=plan.kernel_id, libs=groups,
                             socs=soc_group_table(groups)).encode()
    return libs


BACKEND = CANN()
