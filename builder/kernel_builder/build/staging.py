"""Carrying out a Plan: fetch what it needs, compile (through its backend), lay out the variant.

The plan decided everything; this module only acts, on the paths the plan names: the variant's work
directory in the cache (generated sources, objects, the staged library, a stamp of the fingerprint it was
built from) and the output tree (written by layout.install, atomically). The compile steps every backend
shares live here too: the cpp_extension child (`compile_cpp_extension`), the stage, the stamp and the
private-libstdc++ guard, so that the CMake-driven cann backend reuses them (running a tool and finding its
first error is tools.py's, for every module).
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .. import settings
from . import cache, deps, layout
from .elf import private_libstdcxx
from ..errors import CompileError
from .plan import Plan, changed_inputs
from .render import render
from ..tools import first_error, run_logged


@dataclass(frozen=True)
class BuildReport:
    """What building one variant did (the CLI prints it)."""

    variant: str
    kernel_id: str
    compile_s: float
    layout_s: float
    changed: bool  # False: the output already held exactly these bytes
    size: int


def write_generated(plan: Plan) -> None:
    """Write generated sources only when their text changed: ninja compares mtimes."""
    write_if_changed(plan.workdir / "gen", plan.generated)


def write_if_changed(directory: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        p = directory / name
        if not p.is_file() or p.read_text() != text:
            cache.write_atomic(p, text)


def staged_library(plan: Plan) -> Path | None:
    """The staged library when this exact fingerprint was built before (its stamp says so), else None."""
    so = plan.workdir / "stage" / f"{plan.kernel_id}.abi3.so"
    try:
        if json.loads((plan.workdir / "stamp.json").read_text()).get("fingerprint") == plan.fingerprint and so.is_file():
            return so
    except (OSError, ValueError):
        pass
    return None


def clear_stage(plan: Plan) -> Path:
    """The variant's stage directory, emptied of libraries of earlier fingerprints."""
    stage = plan.workdir / "stage"
    stage.mkdir(parents=True, exist_ok=True)
    for old in stage.glob("*.so"):
        old.unlink()
    return stage


def refuse_changed_inputs(plan: Plan, so: Path | None = None) -> None:
    """A build whose sources were edited after it was planned fails (the library, if given, is removed): its
    output would not be what its fingerprint and metadata say."""
    changed = changed_inputs(plan)
    if changed:
        if so is not None:
            so.unlink(missing_ok=True)
        more = f" and {len(changed) - 1} more" if len(changed) > 1 else ""
        raise CompileError(f"{plan.variant}: {plan.project.root / changed[0]}{more} changed during the build; "
                           "nothing was installed: build again")


def finish(plan: Plan, so: Path, linker: str) -> Path:
    """Refuse a library with a private libstdc++ or compiled while its sources changed, then stamp the
    fingerprint it was built from."""
    refuse_changed_inputs(plan, so)
    if private_libstdcxx(so):
        so.unlink()
        raise CompileError(f"{plan.variant}: the linker ({linker}) put a private copy of libstdc++ into the "
                           "extension; the first exception from torch would crash it. Use a compiler whose "
                           "libstdc++ is shared, e.g. CXX=/usr/bin/g++")
    cache.write_atomic(plan.workdir / "stamp.json", json.dumps({"fingerprint": plan.fingerprint, "id": plan.kernel_id}))
    return so


def compile_cpp_extension(plan: Plan, extension: str, extra_env: dict[str, str], verbose: bool,
                          extra_ldflags: list[str] | tuple[str, ...] = (),
                          drop_torch_flags: tuple[str, ...] = ()) -> Path:
    """The cpp_extension path: write the job, run `python -m kernel_builder.build.compile` (torch's BuildExtension +
    ninja) with its output in the variant's build.log, and stage `<id>.abi3.so`."""
    write_generated(plan)
    stage = clear_stage(plan)
    so = stage / f"{plan.kernel_id}.abi3.so"
    job = {"name": plan.kernel_id, "extension": extension, "stage": str(stage),
           "build_temp": str(plan.workdir / "obj"), "groups": plan.groups, "ldflags": ["-Wl,--strip-debug", *extra_ldflags],
           "drop_torch_flags": list(drop_torch_flags)}
    job_file = plan.workdir / "compile.json"
    cache.write_atomic(job_file, json.dumps(job, indent=1))
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    try:
        import ninja  # the PyPI package: its binary works even when the venv is not activated

        env["PATH"] = os.pathsep.join([ninja.BIN_DIR, env["PATH"]])
    except (ImportError, AttributeError):
        pass
    env.update(extra_env)
    log_path = plan.workdir / "build.log"
    with open(log_path, "w") as log:
        rc = run_logged([sys.executable, "-m", "kernel_builder.build.compile", str(job_file)], log,
                        f"{plan.variant}: compile", env=env, verbose=verbose)
    if rc != 0 or not so.is_file():
        raise CompileError(f"{plan.variant}: compile failed: {first_error(log_path, rc)} (full log: {log_path})")
    return finish(plan, so, settings.current().cxx)


def variant_files(plan: Plan, so: Path | None) -> dict[str, bytes]:
    """Every file of the variant directory, metadata.json (with the digest of the others) included."""
    files = layout.package_files(plan.project)
    files["_ops.py"] = render("_ops.py.j2", id=plan.kernel_id, compiled=so is not None).encode()
    if so is not None:
        files[so.name] = so.read_bytes()
    backend = {"type": plan.variant.backend_type}  # the loader's family; a twin of cann is a cpu variant
    if plan.archs is not None:
        backend["archs"] = plan.archs
    prov = layout.provenance(plan.project)
    if plan.backend is not None and so is not None:
        files.update(plan.backend.variant_extras(plan, so))  # e.g. cann: per-arch-group libraries
        prov.update(plan.backend.provenance_extra(plan))  # e.g. cann: the CANN and torch_npu versions
    meta = layout.metadata(plan.project, plan.kernel_id, backend, files, prov)
    files["metadata.json"] = layout.metadata_bytes(meta)
    return files


def build_variant(plan: Plan, host, out_dir: Path, verbose: bool = False) -> BuildReport:
    """Compile (if the fingerprint's library is not staged yet) and install one variant."""
    t0 = time.monotonic()
    plan.workdir.mkdir(parents=True, exist_ok=True)
    with cache.locked(plan.workdir):
        so = None
        if plan.backend is not None:
            so = staged_library(plan)
            if so is None:
                for d in plan.deps:
                    deps.fetch(d)
                so = plan.backend.build_extension(plan, host, verbose)
        t1 = time.monotonic()
        files = variant_files(plan, so)
        refuse_changed_inputs(plan)  # the package's Python files are read just now
        changed = layout.install(out_dir, plan.variant.name, files)
    return BuildReport(plan.variant.name, plan.kernel_id, t1 - t0, time.monotonic() - t1, changed,
                       sum(len(b) for b in files.values()))
