"""How to compile Ascend C kernels for the CPU twin (stdlib only).

Given the folder holding Huawei's open sources (``asc-devkit``, ``asc-tools``,
``libboundscheck``; read-only, never written to), :func:`compile_recipe`
returns the flags, include order and sources a kernel translation unit and the
twin runtime need. Everything generated or built goes under the caller's
directories (``gen_dir``, object caches), never beside the shared sources.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

TWIN_DIR = Path(__file__).resolve().parent
TWIN_INCLUDE = TWIN_DIR / "include"
TWIN_SRC = TWIN_DIR / "src"

# Per arch group: the defines the devkit's headers switch on.
_ARCH_DEFINES = {
    "c220": ["-D__NPU_ARCH__=2201", "-D__CCE_AICORE__=220", "-D__DAV_C220__",
             "-DKB_CANN_ARCH_C220"],
    "m200": ["-D__NPU_ARCH__=2002", "-D__CCE_AICORE__=200", "-D__DAV_M200__",
             "-DKB_CANN_ARCH_M200"],
}
_COMMON_DEFINES = ["-DASCENDC_CPU_DEBUG=1", "-D__CCE_KT_TEST__=1"]

# Open cpudebug sources that compile unchanged and that the twin links
# (globals such as block_idx, the fp16 type, print lock, backtrace).
_CPUDEBUG_SOURCES = [
    "asc-tools/cpudebug/src/regfwk/stub_base.cpp",
    "asc-tools/cpudebug/src/regfwk/stub_backtrace.cpp",
    "asc-tools/cpudebug/src/regfwk/kernel_print_lock.cpp",
    "asc-tools/cpudebug/src/acl_stub/kernel_fp16.cpp",
]

TILING_HEADER = Path("kernel_tiling") / "kernel_tiling.h"


@dataclass(frozen=True)
class Recipe:
    """Compile/link recipe for one arch group.

    C++ TUs (kernel and runtime): ``g++ {cxx_flags} {defines} -I{include_dirs}...
    -isystem{system_include_dirs}... -c SRC``. ``generated`` lists files (relative
    to ``gen_dir``) that :func:`tiling_command` must have written first. libboundscheck:
    compile each of ``boundscheck_sources`` with ``gcc {boundscheck_cflags}`` and
    link the objects (or an archive of them) with the kernel and runtime objects,
    plus ``link_libs``.
    """

    arch_group: str
    defines: list
    include_dirs: list
    system_include_dirs: list
    cxx_flags: list
    runtime_sources: list
    generated: list
    gen_dir: Path
    boundscheck_sources: list
    boundscheck_cflags: list
    link_libs: list

    def cxx_command(self, src: Path, obj: Path, cxx: str = "g++") -> list:
        """The g++ command line compiling one C++ TU (kernel or runtime)."""
        cmd = [cxx, *self.cxx_flags, *self.defines]
        cmd += [f"-I{d}" for d in self.include_dirs]
        for d in self.system_include_dirs:
            cmd += ["-isystem", str(d)]
        return cmd + ["-x", "c++", "-c", str(src), "-o", str(obj)]


def _check_tree(ascend_src: Path) -> None:
    for sub in ("asc-devkit", "asc-tools", "libboundscheck"):
        if not (ascend_src / sub).is_dir():
            raise FileNotFoundError(f"{ascend_src / sub} not found (need the open Ascend sources)")


def compile_recipe(ascend_src: Path, arch_group: str, gen_dir: Path) -> Recipe:
    """Recipe for compiling Ascend C kernels of ``arch_group`` ("c220" or "m200")."""
    if arch_group not in _ARCH_DEFINES:
        raise ValueError(f"unknown Ascend arch group {arch_group!r}; expected one of "
                         f"{sorted(_ARCH_DEFINES)}")
    a = Path(ascend_src).resolve()
    _check_tree(a)
    dev, dbg = a / "asc-devkit", a / "asc-tools" / "cpudebug"
    include_dirs = [  # ours first: stand-ins for closed headers, kernel_operator.h wrapper
        TWIN_INCLUDE, dbg / "include", dbg / "utils", dbg / "utils" / "include",
        dbg / "utils" / "include" / "utils", a / "libboundscheck" / "include",
    ]
    apis = ("basic_api", "adv_api", "utils", "c_api", "tensor_api", "simt_api")
    system_include_dirs = [dev / "include", *[dev / "include" / x for x in apis],
                           dev / "impl",
                           *[dev / "impl" / x for x in ("basic_api", "utils", "adv_api",
                                                        "c_api", "tensor_api", "simt_api")],
                           dev, Path(gen_dir).resolve()]
    runtime = sorted(TWIN_SRC.glob("*.cpp")) + [a / s for s in _CPUDEBUG_SOURCES]
    return Recipe(
        arch_group=arch_group,
        defines=_COMMON_DEFINES + _ARCH_DEFINES[arch_group],
        include_dirs=include_dirs,
        system_include_dirs=system_include_dirs,
        cxx_flags=["-std=c++17", "-O1", "-g", "-fPIC"],
        runtime_sources=runtime,
        generated=[TILING_HEADER],
        gen_dir=Path(gen_dir).resolve(),
        boundscheck_sources=sorted((a / "libboundscheck" / "src").glob("*.c")),
        boundscheck_cflags=["-O2", "-fPIC", f"-I{a / 'libboundscheck' / 'include'}"],
        link_libs=["-lpthread"],
    )


def tiling_command(recipe: Recipe, ascend_src: Path, out: Path) -> list:
    """The command that writes the API's generated ``kernel_tiling.h`` to ``out``: the devkit's own
    ``gen_kernel_tiling_data_def.py``, reading the devkit and writing only ``out`` (the caller runs it and
    moves ``out`` to ``recipe.gen_dir / TILING_HEADER``)."""
    dev = Path(ascend_src).resolve() / "asc-devkit"
    script = dev / "impl" / "adv_api" / "cmake" / "scripts" / "gen_kernel_tiling_data_def.py"
    return [sys.executable, str(script), str(dev / "include" / "adv_api"), str(out)]


def devkit_version(ascend_src: Path) -> str:
    """The asc-devkit package version, from ``asc-devkit/version.cmake``
    (``set_cann_package(asc-devkit VERSION "9.1.0")``)."""
    text = (Path(ascend_src) / "asc-devkit" / "version.cmake").read_text()
    m = re.search(r'set_cann_package\(\s*asc-devkit\s+VERSION\s+"([^"]+)"', text)
    if not m:
        raise ValueError("no asc-devkit VERSION in version.cmake")
    return m.group(1)
