"""Planning a host build, with no side effects: which variants, what each compiles, and its fingerprint.

Everything here is computed from the project, the Host and the options: no file is written, nothing is
downloaded, torch is not imported. So `list-variants`, `build --all --dry-run` and `ci github` can plan as
often as they like, and `staging` gets a complete Plan to carry out. The fingerprint is a hash of every
input that shapes the output (kernel-builder's own package and templates included), so the same inputs give
the same id (`_<module>_<backend>_<hash>`) and a no-op rebuild is a hash and a byte comparison.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from .. import PACKAGE_DIR, __version__, backends
from . import cache, deps
from ..errors import UsageError
from .host import Host, cxx_standard
from ..project.options import BuildOptions
from ..project.model import Kernel, Project
from .render import render, template_dir
from ..variants import Variant, major_minor as _vt, noarch

PY_LIMITED_API = "0x03090000"  # the contract's abi3 floor (Python 3.9); torch's own default is 3.10


@dataclass
class Selection:
    """What a host build would do for one backend: build `variant`, or skip it for `reason`."""

    family: str
    variant: Variant | None
    reason: str | None = None
    kernels: tuple[Kernel, ...] = ()
    notes: list[str] = field(default_factory=list)
    deps: dict[str, list[deps.Dependency]] = field(default_factory=dict)  # kernel name -> its header deps


def select(project: Project, host: Host | None, options: BuildOptions) -> list[Selection]:
    """One entry per backend the project names, in general.backends order."""
    if project.torch is None:  # pure Python: one host-independent variant per backend, nothing to compile
        return [Selection(f, noarch(f)) for f in project.general.backends]
    if options.twin:
        if options.twin not in project.general.backends:
            raise UsageError(f"{project.file}: --{options.twin}-twin: general.backends does not name {options.twin!r}")
        return [_select_one(project, f, host, options) if f == options.twin else
                Selection(f, None, f"--{options.twin}-twin builds the {options.twin} kernels only")
                for f in project.general.backends]
    return [_select_one(project, family, host, options) for family in project.general.backends]


def backend_for(family: str, options: BuildOptions):
    """The backend that builds `family` under `options`: the registered one, or its CPU twin mode when the
    options ask for one (which validates its targets and finds its tools: UsageError, EnvironmentProblem)."""
    if options.twin == family:
        return backends.get_twin(family, options.twin_targets)
    return backends.get(family)


def _select_one(project: Project, family: str, host: Host, options: BuildOptions) -> Selection:
    kernels = project.kernels_for(family)
    if not kernels:
        return Selection(family, None, "no [kernel.*] table for this backend")
    if not backends.is_built(family):
        return Selection(family, None, f"backend {family} is not built by kernel-builder yet")
    backend = backend_for(family, options)
    t = project.torch
    reason = backend.unavailable(host)
    if not reason and t.minver and host.torch_mm < _vt(t.minver):
        reason = f"torch {host.torch_version} is below torch.minver {t.minver}"
    if not reason and t.maxver and host.torch_mm > _vt(t.maxver):
        reason = f"torch {host.torch_version} is above torch.maxver {t.maxver}"
    reason = reason or backend.gate(project, host)
    if reason:
        return Selection(family, None, reason)
    keep, notes = backend.select_kernels(project, kernels, host, options)
    sel = Selection(family, backend.variant(host), notes=list(notes))
    for k in keep:
        line = project.line_of(f"kernel.{k.name}.depends")
        sel.deps[k.name] = [deps.resolve(d, project.file, k.name, line) for d in k.depends]
    wanted = options.stable_abi
    if wanted and t.stable_abi.get(family) == wanted:
        if host.torch_mm < _vt(wanted):
            raise UsageError(f"--stable-abi {wanted}: torch {host.torch_version} is older than the ABI it targets")
        v = sel.variant
        sel.variant = Variant("stable", v.backend, _vt(wanted), None, v.arch, v.os)
    elif t.stable_abi.get(family):
        sel.notes.append(f"torch.stable-abi.{family} = {t.stable_abi[family]}: the stable-ABI variant is built "
                         "with the matrix (build --all); building the regular variant")
    if not keep:
        sel.variant, sel.reason = None, "every kernel of this backend was skipped"
    sel.kernels = tuple(keep)
    return sel


# --------------------------------------------------------------------------------------------------


@dataclass
class Plan:
    """One variant, fully decided: what `staging` compiles and lays out, with no further choices."""

    project: Project
    family: str
    backend: object | None  # the family's backend (backends.get); None for a pure-Python variant
    variant: Variant
    kernels: tuple[Kernel, ...]
    fingerprint: str
    kernel_id: str
    workdir: Path  # in kernel-builder's cache; staging creates it
    groups: list[dict]  # sources that share flags: one ninja run each
    generated: dict[str, str]  # path in workdir/gen -> text
    archs: list[str] | None
    deps: tuple[deps.Dependency, ...] = ()  # header trees staging fetches before compiling
    inputs: dict[str, str] | None = None  # the project's input files when planned: path -> sha256 (input_digests)


OWN_SUFFIXES = (".py", ".toml", ".h", ".hpp", ".c", ".cc", ".cpp")  # modules, data, the twin's C++ runtime


def own_files() -> dict[str, Path]:
    """kernel-builder's own files that can shape an output, by a name that does not depend on where the
    package is installed: every module and template (a new module cannot be forgotten), except those that
    shape none (the Dockerfile, CI templates)."""
    tdir = template_dir()
    own = {f"kernel_builder/{p.relative_to(PACKAGE_DIR).as_posix()}": p for p in sorted(PACKAGE_DIR.rglob("*"))
           if p.suffix in OWN_SUFFIXES and "__pycache__" not in p.parts}
    own.update({f"templates/{p.relative_to(tdir).as_posix()}": p for p in sorted(tdir.rglob("*"))
                if p.is_file() and p.name != "Dockerfile" and p.parent.name != "ci"})
    return own


def input_digests(project: Project) -> dict[str, str]:
    """Each input file of the project (relative path) and the sha256 of its bytes. Taken when a variant is
    planned and again before its library is stamped and its directory installed: a source edited during a
    build then fails that build, instead of leaving a library compiled from other bytes than its fingerprint
    names (which a later build of the planned bytes would reuse)."""
    return {p.relative_to(project.root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in project.all_inputs()}


def changed_inputs(plan: Plan) -> list[str]:
    """Input files whose bytes differ from the plan's (edited, added or removed since), sorted."""
    if plan.inputs is None:
        return []
    now = input_digests(plan.project)
    return sorted(k for k in plan.inputs.keys() | now.keys() if plan.inputs.get(k) != now.get(k))


def hash_inputs(project: Project, extra: list[str], inputs: dict[str, str] | None = None) -> str:
    """The fingerprint: `extra`, kernel-builder's own files and the project's inputs (`inputs`: their
    input_digests when the caller has them already, so the project's files are read once)."""
    h = hashlib.sha256()
    for item in extra:
        h.update(item.encode() + b"\0")
    for name, p in own_files().items():
        h.update(name.encode() + b"\0" + p.read_bytes() + b"\0")
    for name, digest in (input_digests(project) if inputs is None else inputs).items():
        h.update(name.encode() + b"\0" + digest.encode() + b"\0")
    return h.hexdigest()


def stable_abi_defines(variant: Variant) -> list[str]:
    """A torch-stable-abiXY variant: the registration macros switch to STABLE_TORCH_LIBRARY and torch's
    stable headers hide everything newer than the targeted version."""
    if variant.kind != "stable":
        return []
    return ["-DKB_STABLE_ABI", f"-DTORCH_TARGET_VERSION=0x{variant.torch[0]:02x}{variant.torch[1]:02x}000000000000"]


def make_plan(project: Project, sel: Selection, host: Host | None, options: BuildOptions) -> Plan:
    backend = backend_for(sel.family, options) if project.torch is not None else None
    workdir = cache.variant_path(project.root, project.general.name,
                                 sel.variant.name + (backend.work_tag if backend else ""))
    inputs = input_digests(project)
    if project.torch is None:
        fp = hash_inputs(project, [__version__, sel.variant.name], inputs)
        return Plan(project, sel.family, None, sel.variant, (), fp, f"_{project.general.module}_{sel.family}_{fp[:10]}",
                    workdir, [], {}, None, inputs=inputs)
    all_deps = tuple(dict.fromkeys(d for k in sel.kernels for d in sel.deps.get(k.name, []) if d.include))
    fp = hash_inputs(project, [__version__, sel.variant.name, host.torch_version, backend.toolchain(host),
                               json.dumps(options.fingerprint(), sort_keys=True), ",".join(k.name for k in sel.kernels),
                               json.dumps({k: [d.key for d in v] for k, v in sel.deps.items()}, sort_keys=True)],
                     inputs)
    kernel_id = f"_{project.general.module}_{sel.variant.backend_type}_{fp[:10]}"  # the loader's family: cpu for a twin
    groups, generated = _compile_groups(project, sel, host, options, backend, kernel_id, workdir / "gen")
    return Plan(project, sel.family, backend, sel.variant, sel.kernels, fp, kernel_id, workdir, groups,
                generated, backend.archs(project, host, options), all_deps, inputs)


def _compile_groups(project: Project, sel: Selection, host: Host, options: BuildOptions, backend, kernel_id: str,
                    gen: Path) -> tuple[list[dict], dict[str, str]]:
    """Sources grouped by their flags (one ninja run per group) and the generated wrapper sources."""
    root, t = project.root, project.torch
    defines = backend.defines() + stable_abi_defines(sel.variant)
    abi = [f"-DPy_LIMITED_API={PY_LIMITED_API}", f"-D_GLIBCXX_USE_CXX11_ABI={int(host.cxx11_abi)}"]
    common = ["-O3", "-DNDEBUG", "-fno-gnu-unique", "-g0"] + abi + defines
    nvcc_common = abi + defines
    std = f"-std=c++{cxx_standard(host.torch_mm)}"
    base_includes = [str(gen), str(root), str(root / "torch-ext")] + [str(root / i) for i in t.include]

    generated = {"registration.h": render("registration.h.j2"),
                 "module_init.cpp": render("module_init.cpp.j2", id=kernel_id)}
    binding_sources = [str(gen / "module_init.cpp")]
    for i, rel in enumerate(s for s in t.src if Path(s).suffix in {".cpp", ".cc", ".cxx"}):
        name = f"binding_{i}.cpp"
        generated[name] = render("binding_entry.cpp.j2", id=kernel_id, source=str(root / rel))
        binding_sources.append(str(gen / name))
    groups: dict[str, dict] = {}

    def add(sources, includes, cxx, nvcc):
        # the C++ standard goes first and only where the project's own flags name none (nvcc refuses two)
        cxx, nvcc = _with_std(std, cxx), _with_std(std, nvcc)
        key = json.dumps([includes, cxx, nvcc])
        groups.setdefault(key, {"sources": [], "include_dirs": includes, "cxx": cxx, "nvcc": nvcc})["sources"] += sources

    if host.os == "linux":
        generated["glibc_compat.cpp"] = render("glibc_compat.cpp.j2")
        binding_sources.append(str(gen / "glibc_compat.cpp"))
    add(binding_sources, base_includes, common + list(t.cxx_flags), nvcc_common)
    for k in sel.kernels:
        if not k.sources:
            continue  # a header-only kernel (used by another through include): nothing of its own to compile
        flags = backend.kernel_flags(project, k, host, options)
        srcs = []
        for rel in k.sources:
            path = root / rel
            if b"TORCH_EXTENSION_NAME" in path.read_bytes():  # a kernel source that registers ops itself
                name = f"kernel_{k.name}_{Path(rel).name}" + (".cu" if path.suffix == ".cu" else ".cpp")
                generated[name] = render("binding_entry.cpp.j2", id=kernel_id, source=str(path))
                srcs.append(str(gen / name))
            else:
                srcs.append(str(path))
        dep_includes = [d.include for d in sel.deps.get(k.name, []) if d.include]
        add(srcs, base_includes + [str(root / i) for i in k.include] + dep_includes, common + flags["cxx"],
            nvcc_common + flags["nvcc"])
    fallback = backend.fallback_include_dirs(host)
    for g in groups.values():
        g["fallback_include_dirs"] = fallback
    return list(groups.values()), generated


def _with_std(std: str, flags: list[str]) -> list[str]:
    return flags if any(f.startswith(("-std=", "--std")) for f in flags) else [std, *flags]
