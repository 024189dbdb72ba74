"""The compile step: torch.utils.cpp_extension's BuildExtension + ninja, run in a child process.

    python -m kernel_builder.build.compile PLAN.json

Why a child: importing torch costs more than a no-op rebuild may take, so the parent only spawns this
when something must compile; and cpp_extension's ninja runner writes straight to fd 1, which the parent
redirects into the variant's log.

Why a BuildExtension subclass: cpp_extension knows torch's include/library paths, the ABI and
limited-API defines, nvcc's host flags and how to drive ninja with depfiles. It gives every source of
an extension the same flags, though, and each kernel has its own; so `build_extension` below calls the
(ninja-wrapped) `compiler.compile` once per group of sources that share flags, each group with its own
build.ninja, and links the objects itself. Groups are keyed by their flags, so sources that agree
compile in one ninja run, in parallel.
"""

from __future__ import annotations

import json
import os
import sys

from .. import settings

# Defines cpp_extension adds that must not reach our translation units:
# TORCH_API_INCLUDE_EXTENSION_H makes <torch/torch.h> pull in pybind11 (no limited API);
# TORCH_EXTENSION_NAME is the build's id and only the generated binding wrappers may see it,
# so an edit to one kernel source does not recompile every object; Py_LIMITED_API is re-set to
# the version the contract names.
_DROP_PREFIXES = ("-DTORCH_API_INCLUDE_EXTENSION_H", "-DTORCH_EXTENSION_NAME=", "-DPy_LIMITED_API=")


def _build(plan: dict) -> None:
    from setuptools import Distribution
    from torch.utils import cpp_extension as ce

    drop = set(plan.get("drop_torch_flags", ()))
    ce.COMMON_NVCC_FLAGS[:] = [f for f in ce.COMMON_NVCC_FLAGS if f not in drop]  # read at compile time
    make = getattr(ce, plan["extension"])  # the backend names it: CppExtension, CUDAExtension
    all_sources = [s for g in plan["groups"] for s in g["sources"]]
    ext = make(plan["name"], all_sources, py_limited_api=True, extra_link_args=list(plan["ldflags"]))

    class KernelBuildExtension(ce.BuildExtension):
        def build_extension(self, ext):
            args = ext.extra_compile_args
            if not isinstance(args, dict):  # CppExtension keeps one list for the C++ compiler
                args = {"cxx": args, "nvcc": []}
            base = {lang: [f for f in args.get(lang, []) if not f.startswith(_DROP_PREFIXES)]
                    for lang in ("cxx", "nvcc")}
            objects = []
            for i, group in enumerate(plan["groups"]):
                objects += self.compiler.compile(
                    group["sources"], output_dir=os.path.join(self.build_temp, f"group{i}"),
                    macros=ext.define_macros, include_dirs=group["include_dirs"] + ext.include_dirs + group.get("fallback_include_dirs", []),
                    extra_postargs={"cxx": base["cxx"] + group["cxx"], "nvcc": base["nvcc"] + group["nvcc"]},
                    depends=ext.depends)
            # Link with the C++ driver alone, not Python's LDSHARED: some interpreters (python-build-standalone,
            # as on the H100 image) bring -static-libstdc++ and their own -L/-rpath, and a private libstdc++
            # copy makes every c10::Error thrown across torch's libraries crash the process.
            linker = [settings.current().cxx, "-shared"]
            for attr in ("linker_so", "linker_so_cxx"):
                if hasattr(self.compiler, attr):
                    self.compiler.set_executable(attr, linker)
            spawn = self.compiler.spawn

            def spawn_logged(cmd, **kw):  # the link line belongs in the build log (-v shows it)
                print("$ " + " ".join(map(str, cmd)), flush=True)
                return spawn(cmd, **kw)

            self.compiler.spawn = spawn_logged
            self.compiler.link_shared_object(
                objects, self.get_ext_fullpath(ext.name), libraries=self.get_libraries(ext),
                library_dirs=ext.library_dirs, runtime_library_dirs=ext.runtime_library_dirs,
                extra_postargs=ext.extra_link_args, export_symbols=self.get_export_symbols(ext),
                build_temp=self.build_temp, target_lang="c++")

    dist = Distribution({"name": plan["name"], "ext_modules": [ext], "script_name": "kernel-builder"})
    cmd = KernelBuildExtension(dist, use_ninja=True)
    cmd.build_lib, cmd.build_temp = plan["stage"], plan["build_temp"]
    cmd.ensure_finalized()
    cmd.run()


def main(argv: list[str]) -> int:
    with open(argv[0]) as f:
        plan = json.load(f)
    _build(plan)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
