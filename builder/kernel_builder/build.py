"""Drive one host build: choose variants, plan each, compile what changed, lay out the tree.

The plan is pure data computed without importing torch: the id (`_<module>_<backend>_<hash>`) is a
hash of every input that shapes the output, so the same inputs give the same id and a no-op rebuild
is a hash, a byte comparison and nothing else.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__, cache, layout
from .backends import BUILT, Backend, get as get_backend
from . import deps
from .config import Kernel, Project, _Reader
from .errors import CompileError, UsageError
from .host import Host
from .render import render, template_dir
from .variants import Variant, parse as parse_variant

PY_LIMITED_API = "0x03090000"  # the contract's abi3 floor (Python 3.9); torch's own default is 3.10


@dataclass
class Selection:
    """What a host build would do for one backend: build `variant`, or skip it for `reason`."""

    family: str
    variant: str | None
    reason: str | None = None
    kernels: tuple[Kernel, ...] = ()
    notes: list[str] = field(default_factory=list)
    dep_includes: dict[str, list[str]] = field(default_factory=dict)  # kernel name -> include dirs


def _vt(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split(".")[:2])


def select(project: Project, host: Host, options: dict) -> list[Selection]:
    """One entry per backend the project names, in general.backends order."""
    out = []
    torch_mm = host.torch_mm
    for family in project.general.backends:
        kernels = project.kernels_for(family)
        if project.torch is None:  # pure Python: one host-independent variant per backend, nothing to compile
            out.append(Selection(family, "torch-" + ("npu" if family == "cann" else family)))
            continue
        if not kernels:
            out.append(Selection(family, None, "no [kernel.*] table for this backend"))
            continue
        if family not in BUILT:
            out.append(Selection(family, None, f"backend {family} is not built by kernel-builder yet"))
            continue
        backend = get_backend(family)
        reason = backend.unavailable(host)
        t = project.torch
        if not reason and t.minver and torch_mm < _vt(t.minver):
            reason = f"torch {host.torch_version} is below torch.minver {t.minver}"
        if not reason and t.maxver and torch_mm > _vt(t.maxver):
            reason = f"torch {host.torch_version} is above torch.maxver {t.maxver}"
        g = project.general
        if not reason and family == "cuda" and g.cuda_minver and _vt(host.torch_cuda) < _vt(g.cuda_minver):
            reason = f"CUDA {host.torch_cuda} is below general.cuda.minver {g.cuda_minver}"
        if not reason and family == "cuda" and g.cuda_maxver and _vt(host.torch_cuda) > _vt(g.cuda_maxver):
            reason = f"CUDA {host.torch_cuda} is above general.cuda.maxver {g.cuda_maxver}"
        if reason:
            out.append(Selection(family, None, reason))
            continue
        sel = Selection(family, backend.variant(host).name)
        keep = []
        for k in kernels:
            if family == "cuda" and k.cuda_minver and _vt(host.torch_cuda) < _vt(k.cuda_minver):
                sel.notes.append(f"kernel.{k.name}: skipped, needs CUDA {k.cuda_minver} (have {host.torch_cuda})")
            else:
                keep.append(k)
        if family == "cuda":
            from .backends.cuda import capabilities

            for k in keep:
                caps, notes = capabilities(k, host, options.get("cuda_archs"))
                sel.notes += [f"kernel.{k.name}: {n}" for n in notes]
                if not caps:
                    raise UsageError(f"{project.file}: kernel.{k.name}.cuda-capabilities: none of "
                                     f"{list(k.cuda_capabilities) or 'the defaults'} can be built with nvcc "
                                     f"{host.nvcc_version}" + (" and --cuda-archs" if options.get("cuda_archs") else ""))
        for k in keep:
            line = _Reader(project.file, project.file.read_text()).line_of(f"kernel.{k.name}.depends")
            sel.dep_includes[k.name] = [d for dep in k.depends for d in deps.include_dirs(dep, project.file, k.name, line)]
        wanted = options.get("stable_abi")
        if wanted and t.stable_abi.get(family) == wanted:
            if torch_mm < _vt(wanted):
                raise UsageError(f"--stable-abi {wanted}: torch {host.torch_version} is older than the ABI it targets")
            v = backend.variant(host)
            sel.variant = Variant("stable", v.backend, _vt(wanted), None, v.arch, v.os).name
        elif t.stable_abi.get(family):
            sel.notes.append(f"torch.stable-abi.{family} = {t.stable_abi[family]}: the stable-ABI variant is built "
                             "with the matrix (build --all); building the regular variant")
        if not keep:
            sel.variant, sel.reason = None, "every kernel of this backend was skipped"
        sel.kernels = tuple(keep)
        out.append(sel)
    return out


# --------------------------------------------------------------------------------------------------


@dataclass
class Plan:
    project: Project
    family: str
    backend: Backend | None  # None for a [torch-noarch] variant: nothing to compile
    variant: str
    kernels: tuple[Kernel, ...]
    fingerprint: str
    kernel_id: str
    workdir: Path
    groups: list[dict]
    generated: dict[str, str]  # path in workdir -> text
    archs: list[str] | None


def stable_abi_defines(sel: Selection) -> list[str]:
    """A torch-stable-abiXY variant: the registration macros switch to STABLE_TORCH_LIBRARY and torch's
    stable headers hide everything newer than the targeted version."""
    if not sel.variant or not sel.variant.startswith("torch-stable-abi"):
        return []
    v = parse_variant(sel.variant)
    return ["-DKB_STABLE_ABI", f"-DTORCH_TARGET_VERSION=0x{v.torch[0]:02x}{v.torch[1]:02x}000000000000"]


def _hash_inputs(project: Project, extra: list[str]) -> str:
    h = hashlib.sha256()
    for item in extra:
        h.update(item.encode() + b"\0")
    own = Path(__file__).resolve().parent  # the modules that shape the output (flags, link, layout) count too
    shaping = [own / f for f in ("build.py", "compile.py", "layout.py", "render.py", "deps.py", "config.py")]
    for t in sorted(template_dir().rglob("*")) + shaping + sorted((own / "backends").glob("*.py")):
        if t.is_file() and t.name != "Dockerfile" and t.parent.name != "ci":  # those two shape no build
            h.update(t.name.encode() + b"\0" + t.read_bytes() + b"\0")
    for p in project.all_inputs():
        h.update(p.relative_to(project.root).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def make_plan(project: Project, sel: Selection, host: Host, options: dict) -> Plan:
    if project.torch is None:
        fp = _hash_inputs(project, [__version__, sel.variant])
        return Plan(project, sel.family, None, sel.variant, (), fp, f"_{project.general.module}_{sel.family}_{fp[:10]}",
                    cache.variant_dir(project.root, project.general.name, sel.variant), [], {}, None)
    backend = get_backend(sel.family)
    toolchain = backend.toolchain(host)
    fp = _hash_inputs(project, [__version__, sel.variant, host.torch_version, toolchain,
                                json.dumps(options.get("cuda_archs")), ",".join(k.name for k in sel.kernels),
                                json.dumps(sel.dep_includes, sort_keys=True)])
    kernel_id = f"_{project.general.module}_{sel.family}_{fp[:10]}"
    work = cache.variant_dir(project.root, project.general.name, sel.variant)
    gen = work / "gen"
    root, t = project.root, project.torch

    defines = backend.defines() + stable_abi_defines(sel)
    common = ["-O3", "-fno-gnu-unique", "-g0", f"-DPy_LIMITED_API={PY_LIMITED_API}",
              f"-D_GLIBCXX_USE_CXX11_ABI={int(host.cxx11_abi)}"] + defines
    nvcc_common = [f"-DPy_LIMITED_API={PY_LIMITED_API}", f"-D_GLIBCXX_USE_CXX11_ABI={int(host.cxx11_abi)}"] + defines
    base_includes = [str(gen), str(root), str(root / "torch-ext")] + [str(root / i) for i in t.include]

    generated = {"registration.h": render("registration.h.j2")}
    binding_sources = []
    for i, rel in enumerate(s for s in t.src if Path(s).suffix in {".cpp", ".cc", ".cxx"}):
        name = f"binding_{i}.cpp"
        generated[name] = render("binding_entry.cpp.j2", id=kernel_id, source=str(root / rel), pyinit=(i == 0))
        binding_sources.append(str(gen / name))
    groups: dict[str, dict] = {}

    def add(sources, includes, cxx, nvcc):
        key = json.dumps([includes, cxx, nvcc])
        groups.setdefault(key, {"sources": [], "include_dirs": includes, "cxx": cxx, "nvcc": nvcc})["sources"] += sources

    if host.os == "linux":
        generated["glibc_compat.cpp"] = render("glibc_compat.cpp.j2")
        binding_sources.append(str(gen / "glibc_compat.cpp"))
    add(binding_sources, base_includes, common + list(t.cxx_flags), nvcc_common)
    for k in sel.kernels:
        flags = backend.kernel_flags(project, k, host, options)
        srcs = []
        for rel in k.sources:
            path = root / rel
            if b"TORCH_EXTENSION_NAME" in path.read_bytes():  # a kernel source that registers ops itself
                name = f"kernel_{k.name}_{Path(rel).name}" + (".cu" if path.suffix == ".cu" else ".cpp")
                generated[name] = render("binding_entry.cpp.j2", id=kernel_id, source=str(path), pyinit=False)
                srcs.append(str(gen / name))
            else:
                srcs.append(str(path))
        add(srcs, base_includes + [str(root / i) for i in k.include] + sel.dep_includes.get(k.name, []), common + flags["cxx"], nvcc_common + flags["nvcc"])
    fallback = backend.fallback_include_dirs(host)
    for g in groups.values():
        g["fallback_include_dirs"] = fallback
    return Plan(project, sel.family, backend, sel.variant, sel.kernels, fp, kernel_id, work, list(groups.values()),
                generated, backend.archs(project, host, options))


def _write_generated(plan: Plan) -> None:
    """Write generated sources only when their text changed: ninja compares mtimes."""
    gen = plan.workdir / "gen"
    gen.mkdir(parents=True, exist_ok=True)
    for name, text in plan.generated.items():
        p = gen / name
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


def run_logged(cmd: list[str], log, env: dict, verbose: bool) -> int:
    """Run a build step with its output in the log (and on the terminal with -v); the exit status."""
    log.write("$ " + " ".join(cmd) + "\n")
    log.flush()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
                            errors="replace")
    for line in proc.stdout:
        log.write(line)
        if verbose:
            sys.stdout.write(line)
    return proc.wait()


def _compile(plan: Plan, host: Host, verbose: bool) -> Path:
    """Run the compile child unless this exact fingerprint's library is already staged."""
    done = staged_library(plan)
    if done is not None:
        return done
    own_build = getattr(plan.backend, "build_extension", None)
    if own_build is not None:  # a backend with its own build system (cann: CMake + CANN's compilers)
        return own_build(plan, host, verbose)
    stage = plan.workdir / "stage"
    so = stage / f"{plan.kernel_id}.abi3.so"
    stamp = plan.workdir / "stamp.json"
    _write_generated(plan)
    for old in stage.glob("*.so") if stage.is_dir() else ():
        old.unlink()
    cuda = plan.family == "cuda"
    job = {"name": plan.kernel_id, "cuda": cuda, "stage": str(stage), "build_temp": str(plan.workdir / "obj"),
           "groups": plan.groups, "ldflags": ["-Wl,--strip-debug"]}
    job_file = plan.workdir / "compile.json"
    cache.write_atomic(job_file, json.dumps(job, indent=1))
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    try:
        import ninja  # the PyPI package: its binary works even when the venv is not activated

        env["PATH"] = os.pathsep.join([ninja.BIN_DIR, env["PATH"]])
    except (ImportError, AttributeError):
        pass
    if cuda:
        env["CUDA_HOME"] = host.cuda_home
        env.setdefault("TORCH_CUDA_ARCH_LIST", ";".join(a.replace("+PTX", "") for a in plan.archs or []))
    log_path = plan.workdir / "build.log"
    cmd = [sys.executable, "-m", "kernel_builder.compile", str(job_file)]
    with open(log_path, "w") as log:
        rc = run_logged(cmd, log, env, verbose)
    if rc != 0 or not so.is_file():
        text = log_path.read_text(errors="replace").splitlines()
        errs = ([ln.strip() for ln in text if "error:" in ln or "error " in ln.lower()[:12]]
                or [ln.strip() for ln in text if ln.startswith("FAILED")])
        first = errs[0] if errs else (text[-1] if text else f"exit status {rc}")
        raise CompileError(f"{plan.variant}: compile failed: {first[:300]} (full log: {log_path})")
    from .check import private_libstdcxx

    if private_libstdcxx(so):
        so.unlink()
        raise CompileError(f"{plan.variant}: the linker ({os.environ.get('CXX', 'c++')}) put a private copy of libstdc++ "
                           "into the extension; the first exception from torch would crash it. Use a compiler whose "
                           "libstdc++ is shared, e.g. CXX=/usr/bin/g++")
    cache.write_atomic(stamp, json.dumps({"fingerprint": plan.fingerprint, "id": plan.kernel_id}))
    return so


def variant_files(plan: Plan, so: Path | None) -> dict[str, bytes]:
    files = layout.package_files(plan.project)
    files["_ops.py"] = render("_ops.py.j2", id=plan.kernel_id, compiled=so is not None).encode()
    if so is not None:
        files[so.name] = so.read_bytes()
    backend = {"type": plan.family}
    if plan.archs is not None:
        backend["archs"] = plan.archs
    extras = getattr(plan.backend, "variant_extras", None)
    if extras is not None and so is not None:  # e.g. cann: per-arch-group kernel libraries and their _ops.py
        files.update(extras(plan, so))
    prov = layout.provenance(plan.project)
    prov_extra = getattr(plan.backend, "provenance_extra", None)
    if prov_extra is not None:  # e.g. cann: the CANN and torch_npu versions
        prov.update(prov_extra(plan))
    meta = layout.metadata(plan.project, plan.kernel_id, backend, files, prov)
    files["metadata.json"] = layout.metadata_bytes(meta)
    return files


def build_variant(plan: Plan, host: Host, out_dir: Path, verbose: bool = False) -> dict:
    """Compile (if needed) and install one variant. Returns a small report for the CLI."""
    t0 = time.monotonic()
    with cache.locked(plan.workdir):
        so = _compile(plan, host, verbose) if plan.backend else None
        t1 = time.monotonic()
        files = variant_files(plan, so)
        changed = layout.install(out_dir, plan.variant, files)
    return {"variant": plan.variant, "id": plan.kernel_id, "compile_s": t1 - t0,
            "layout_s": time.monotonic() - t1, "changed": changed, "size": sum(len(b) for b in files.values())}
