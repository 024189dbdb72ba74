"""The cann backend's third compile mode: the CPU twin (`build DIR --cann-twin --soc SOC`).

Why: no NPU and no bisheng compiler are reachable where most kernel work (and all of our CI) happens, yet an
Ascend C kernel can be wrong in ways a CPU can show: API misuse, indexing, tiling, strides, masks,
conversions. Huawei publishes the Ascend C API (asc-devkit) and the open shell of its CPU debug library
(asc-tools cpudebug); the instruction model behind them is closed, and `twin/` is our own stand-in for it.
With those, the project's unmodified cann kernels compile with the host C++ compiler in Ascend C's CPU mode
for one arch group, and the project's unmodified torch binding links against them as it would for the NPU:
what it registers and checks for the NPU (PrivateUse1) is the CPU here (host_include/kb_twin_binding.h), and
each `aclrtlaunch_<kernel>` it calls runs the kernel's blocks in order on the CPU (generated per build from
the entry points the preprocessor shows). The result is an ordinary CPU variant directory that
`kernels.get_local_kernel` loads on a CPU torch.

A twin tree is a test artefact: metadata.json keeps backend `cpu` for the loader and says in
provenance.twin what it stands for; `check` fails it unless --allow-twin and `upload` refuses it.

The Ascend C API is read where the user keeps it (KERNEL_BUILDER_ASCEND_SRC), never copied: its license
allows use for developing software for Huawei's AI processors and asks that copies keep its notices, so we
make none. Generated headers and objects go to kernel-builder's cache.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

from .. import settings
from ..build import cache, staging
from ..build.host import Host, cxx_version
from ..build.render import render
from ..errors import CompileError, EnvironmentProblem, UsageError
from ..project.model import Kernel, Project
from ..project.options import BuildOptions
from ..tools import first_error, run_logged
from ..variants import Variant
from .base import compiled_variant
from .cann import CANN, soc_versions
from .cann_versions import group_socs, soc_arch
from .twin import recipe as twin_recipe

HOST_INCLUDE = Path(__file__).resolve().parent / "twin" / "host_include"
TWIN_GROUPS = ("c220", "m200")  # the arch groups whose intrinsics twin/ implements
API_PARTS = ("asc-devkit/include/kernel_operator.h", "asc-tools/cpudebug/include", "libboundscheck/include/securec.h")
SCAN_TIMEOUT = 300.0


@dataclass(frozen=True)
class ApiSource:
    """Where the Ascend C API is read from, and which release it is."""

    root: Path
    version: str


def find_api_source() -> ApiSource:
    """The open Ascend C sources named by KERNEL_BUILDER_ASCEND_SRC; EnvironmentProblem (exit 3) saying how
    to get them when unset or incomplete."""
    s = settings.current()
    if s.ascend_src is None:
        hint = (f" (a CANN toolkit is set, ASCEND_HOME_PATH={s.ascend_home}, but the twin does not drive a "
                "toolkit's own CPU debug library)") if s.ascend_home else ""
        raise EnvironmentProblem(
            "--cann-twin needs Huawei's open Ascend C sources: set KERNEL_BUILDER_ASCEND_SRC to a folder holding "
            "asc-devkit/, asc-tools/ and libboundscheck/ (git clones of hicann/asc-devkit, hicann/asc-tools, "
            f"openeuler-mirror/libboundscheck){hint}")
    root = s.ascend_src.expanduser().resolve()
    for part in API_PARTS:
        if not (root / part).exists():
            raise EnvironmentProblem(f"KERNEL_BUILDER_ASCEND_SRC={s.ascend_src}: {part} not found (the folder must "
                                     "hold asc-devkit/, asc-tools/ and libboundscheck/)")
    try:
        version = twin_recipe.devkit_version(root)
    except (OSError, ValueError) as e:
        raise EnvironmentProblem(f"KERNEL_BUILDER_ASCEND_SRC={s.ascend_src}: no asc-devkit version ({e})") from None
    return ApiSource(root, version)


def twin_group(socs: tuple[str, ...]) -> str:
    """The one arch group the twin SoCs share; UsageError naming --soc otherwise."""
    if not socs:
        raise UsageError("--cann-twin: name the SoC the twin stands for with --soc, e.g. --soc Ascend910B1 "
                         f"(arch groups {', '.join(TWIN_GROUPS)})")
    try:
        groups = group_socs(socs)
    except ValueError as e:
        raise UsageError(f"--soc: {e}") from None
    if len(groups) > 1:
        detail = "; ".join(f"{g}: {', '.join(s)}" for g, s in groups.items())
        raise UsageError(f"--soc: one arch group per twin build, got {len(groups)} ({detail}); build one tree per group")
    group = next(iter(groups))
    if group not in TWIN_GROUPS:
        raise UsageError(f"--soc {socs[0]}: arch group {group} has no twin (twin groups: {', '.join(TWIN_GROUPS)})")
    return group


class CANNTwin(CANN):
    """The cann backend in twin mode: the same build.toml keys and kernels, compiled for the CPU."""

    def __init__(self, socs: tuple[str, ...]):
        self.group = twin_group(socs)
        self.socs = tuple(dict.fromkeys(socs))
        self.api = find_api_source()
        self.work_tag = f"-cann-twin-{self.group}"

    # --- hosts and variants ---
    def unavailable(self, host: Host) -> str | None:
        if host.os != "linux":
            return f"the Ascend C CPU twin builds on Linux (this host is {host.os})"
        return None

    def variant(self, host: Host) -> Variant:
        return compiled_variant(host, "cpu")  # the loader sees a CPU variant; provenance.twin says what it is

    def can_load(self, variant: Variant, host: Host) -> bool:
        return variant.backend_type == "cpu"

    def gate(self, project: Project, host: Host) -> str | None:
        return None  # no toolkit version to hold to [general.cann] limits

    def select_kernels(self, project, kernels, host, options):
        keep, notes = [], []
        for k in kernels:
            if self.group in {soc_arch(s) for s in soc_versions(k)}:
                keep.append(k)
            else:
                notes.append(f"kernel {k.name}: its soc-versions have no SoC of arch group {self.group}; skipped")
        if not keep:
            raise UsageError(f"{project.file}: --soc {self.socs[0]}: no cann kernel lists a SoC of arch group "
                             f"{self.group} in soc-versions")
        return tuple(keep), notes

    # --- planning ---
    def recipe(self):
        return twin_recipe.compile_recipe(self.api.root, self.group, self.tiling_dir())

    def tiling_dir(self) -> Path:
        """Generated API headers, shared by every twin build against the same API source."""
        key = cache.project_key(self.api.root) + "-" + self.api.version
        return cache.base() / "cann-twin" / key / "gen"

    def defines(self) -> list[str]:
        return ["-DCANN_KERNEL", "-DKB_CANN_TWIN"]

    def kernel_flags(self, project: Project, kernel: Kernel, host: Host, options: BuildOptions) -> dict:
        return {"cxx": list(kernel.cxx_flags) + api_flags(self.recipe()), "nvcc": []}

    def archs(self, project: Project, host: Host, options: BuildOptions) -> list[str] | None:
        return None  # a cpu variant lists no archs

    def fallback_include_dirs(self, host: Host) -> list[str]:
        return [str(HOST_INCLUDE)]

    def toolchain(self, host: Host) -> str:
        return f"{cxx_version()} | twin {self.group} {','.join(self.socs)} | {self.api.root} {self.api.version}"

    # --- doing ---
    def build_extension(self, plan, host: Host, verbose: bool = False) -> Path:
        """Generate the API's tiling header, find the kernels' entry points, generate their launchers, and
        compile binding + kernels + twin runtime + libboundscheck in one cpp_extension/ninja build."""
        recipe = self.recipe()
        log_path = plan.workdir / "build.log"
        plan.workdir.mkdir(parents=True, exist_ok=True)
        with open(log_path, "w") as log:
            _generate_tiling_header(recipe, self.api.root, log, plan.variant, verbose)
            entries = {}
            for kernel, src in _kernel_sources(plan):
                for e in scan_entries(_preprocess(plan, recipe, kernel, src, log, verbose), src):
                    entries.setdefault(e.name, e)
        if not entries:
            raise CompileError(f"{plan.variant}: no Ascend C kernel entry point (extern \"C\" __global__ __aicore__ "
                               f"void ...) in the cann kernels' sources (log: {log_path})")
        generated = dict(plan.generated)
        generated["twin_launch.cpp"] = render("twin/launch.cpp.j2", entries=list(entries.values()), soc=self.socs[0])
        for e in entries.values():
            generated[f"aclrtlaunch_{e.name}.h"] = render("twin/aclrtlaunch.h.j2", entry=e)
        gen = plan.workdir / "gen"
        base = plan.groups[0]["cxx"][:]  # the binding group's common flags (ABI, limited API, defines)
        # ABI, limited API, optimisation, no debug info (Python's CFLAGS bring -g: slower and ccache-hostile)
        common = [f for f in base if f.startswith(("-D_GLIBCXX", "-DPy_LIMITED", "-O", "-g", "-fno-gnu-unique"))]
        runtime = {"sources": [str(p) for p in recipe.runtime_sources], "include_dirs": [],
                   "cxx": common + api_flags(recipe), "nvcc": [], "fallback_include_dirs": []}
        launch = {"sources": [str(gen / "twin_launch.cpp")], "include_dirs": [str(recipe.include_dirs[0])],
                  "cxx": common, "nvcc": [], "fallback_include_dirs": []}
        bounds = {"sources": [str(p) for p in recipe.boundscheck_sources], "include_dirs": [],
                  "cxx": common + recipe.boundscheck_cflags, "nvcc": [], "fallback_include_dirs": []}
        twin_plan = replace(plan, generated=generated, groups=plan.groups + [runtime, launch, bounds])
        return staging.compile_cpp_extension(twin_plan, "CppExtension", {}, verbose,
                                             extra_ldflags=recipe.link_libs)

    def variant_extras(self, plan, so: Path) -> dict[str, bytes]:
        return {}

    def provenance_extra(self, plan) -> dict:
        twin = {"backend": "cann", "soc": self.socs[0], "arch-group": self.group, "api-source": str(self.api.root),
                "api-version": self.api.version}
        if len(self.socs) > 1:
            twin["socs"] = list(self.socs)
        return {"twin": twin}


def api_flags(recipe) -> list[str]:
    """The defines and include order of Ascend C's CPU mode (ours first, the API as system headers)."""
    flags = [f for f in recipe.cxx_flags if f not in ("-g", "-fPIC")] + list(recipe.defines)
    flags += [f"-I{d}" for d in recipe.include_dirs]
    for d in recipe.system_include_dirs:
        flags += ["-isystem", str(d)]
    return flags


# --------------------------------------------------------------------------------------------------
# Entry points: what `g++ -E -DKB_TWIN_SCAN` shows of `extern "C" __global__ __aicore__ void NAME(...)`


@dataclass(frozen=True)
class Param:
    type: str  # as declared after preprocessing: "uint8_t *", "uint32_t", "float"
    name: str

    @property
    def pointer(self) -> bool:
        return "*" in self.type

    @property
    def host_type(self) -> str:
        """How aclrtlaunch_<kernel> takes it (CANN's convention): device pointers as void*."""
        return "void*" if self.pointer else self.type


@dataclass(frozen=True)
class Entry:
    name: str
    params: tuple[Param, ...]


SCALAR_TYPES = {"bool", "char", "int", "unsigned", "unsigned int", "long", "unsigned long", "float", "double",
                "size_t", *(f"{u}int{n}_t" for u in ("", "u") for n in (8, 16, 32, 64))}
_ENTRY = re.compile(r'extern\s+"C"\s+__kb_twin_entry__\b([^;{(]*?)\bvoid\s+(\w+)\s*\(([^)]*)\)\s*\{')


def scan_entries(preprocessed: str, source: Path) -> list[Entry]:
    """The kernel entry points of one preprocessed translation unit (definitions only)."""
    out = []
    for m in _ENTRY.finditer(preprocessed):
        params = []
        for i, raw in enumerate(p.strip() for p in m.group(3).split(",") if p.strip() and p.strip() != "void"):
            pm = re.fullmatch(r"(.*?[\s*&])(\w+)", raw)
            if not pm:
                raise CompileError(f"{source}: kernel {m.group(2)}: parameter {i + 1} ({raw!r}) has no name")
            ptype = " ".join(pm.group(1).replace("*", " * ").split()).replace("const ", "")
            param = Param(ptype, pm.group(2))
            if not param.pointer and ptype not in SCALAR_TYPES:
                raise CompileError(f"{source}: kernel {m.group(2)}: parameter {param.name} of type {ptype!r}: the twin "
                                   "launches kernels whose arguments are GM addresses and plain scalars")
            params.append(param)
        out.append(Entry(m.group(2), tuple(params)))
    return out


def _kernel_sources(plan) -> list[tuple[Kernel, Path]]:
    return [(k, plan.project.root / rel) for k in plan.kernels for rel in k.sources if plan.backend.compiles(rel)]


def _preprocess(plan, recipe, kernel: Kernel, src: Path, log, verbose: bool) -> str:
    """`c++ -E -P -DKB_TWIN_SCAN` of one kernel source, with the flags it compiles with."""
    includes = [plan.project.root, plan.project.root / "torch-ext", *(plan.project.root / i for i in kernel.include)]
    out = plan.workdir / "twin-scan" / f"{kernel.name}-{src.name}.i"  # two kernels may share a file name
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [settings.current().cxx, "-E", "-P", "-DKB_TWIN_SCAN", *plan.backend.defines(),
           *[f"-I{d}" for d in includes], *api_flags(recipe), *kernel.cxx_flags, str(src), "-o", str(out)]
    rc = run_logged(cmd, log, f"{plan.variant}: find the entry points of {src.name}", verbose=verbose,
                    timeout=SCAN_TIMEOUT)
    if rc != 0:
        log.flush()
        raise CompileError(f"{plan.variant}: {src.name}: {first_error(Path(log.name), rc)} (full log: {log.name})")
    return out.read_text(errors="replace")


def _generate_tiling_header(recipe, api_root: Path, log, variant, verbose: bool) -> None:
    """The API's kernel_tiling.h, generated by the devkit's own script into our cache (once per API source)."""
    target = recipe.gen_dir / twin_recipe.TILING_HEADER
    if target.is_file():
        return
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")  # two builds may generate it at once
    tmp.parent.mkdir(parents=True, exist_ok=True)
    rc = run_logged(twin_recipe.tiling_command(recipe, api_root, tmp), log, f"{variant}: generate kernel_tiling.h",
                    verbose=verbose)
    if rc != 0 or not tmp.is_file():
        log.flush()
        raise EnvironmentProblem(f"{variant}: the devkit's gen_kernel_tiling_data_def.py failed: "
                                 f"{first_error(Path(log.name), rc)}")
    tmp.replace(target)


def twin(targets: tuple[str, ...]) -> CANNTwin:
    """The registry's constructor (backends.TWINS): the cann backend in twin mode for these SoCs."""
    return CANNTwin(targets)
