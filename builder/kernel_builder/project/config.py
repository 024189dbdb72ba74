"""build.toml -> typed, validated objects.

The format is Hugging Face's (editions 4 and 5, see CONTRACT.md §1) plus our own Ascend C kernel
tables. Everything is validated here, before anything is compiled or written, so a build either
starts from a consistent project or stops with one line naming file, line, key and value.
"""

from __future__ import annotations

import posixpath
import re
import sys
from pathlib import Path, PurePosixPath

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from .. import backends
from ..errors import ConfigError
from . import limits
from .flags import flag_problem
from .model import (COMMON_KERNEL_KEYS, HEADER_SUFFIXES, SOURCE_SUFFIXES, General, Hub,  # noqa: F401 (re-exported)
                      Kernel, Project, TorchExt, TorchNoarch)
from ..variants import FAMILIES

NAME_RE = re.compile(r"^[a-z][-a-z0-9]*[a-z0-9]$")
KERNEL_TABLE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
VERSION_RE = re.compile(r"^\d+\.\d+(\.\d+)?$")
REPO_ID_RE = re.compile(r"^[A-Za-z0-9][-A-Za-z0-9_.]*/[A-Za-z0-9][-A-Za-z0-9_.]*$")
HTTP_URL_RE = re.compile(r"^https?://\S+$")
# What HF's parser takes as a git URL beyond http(s): accepted, with a note (metadata.json keeps it as written).
GIT_URL_RE = re.compile(r"^(?:(?:git|ssh|git\+ssh|git\+https|git\+http)://\S+|[A-Za-z0-9_.-]+@[A-Za-z0-9_.-]+:\S+)$")

ALL_BACKENDS = tuple(sorted(FAMILIES))  # what general.backends may name: every family the loader knows
# Kernel tables of families HF's format has but kernel-builder does not build: parsed, checked for unknown
# keys, skipped with a note. The keys of built families come from their backend module.
FORMAT_ONLY_KERNEL_KEYS = {
    "rocm": {"rocm-archs", "hip-flags"},
    "xpu": {"sycl-flags"},
    "metal": set(),
}
KNOWN_DEPENDS = ("torch", "cutlass_2_10", "cutlass_3_5", "cutlass_3_6", "cutlass_3_8", "cutlass_3_9",
                 "cutlass_4_0", "cutlass_4_4", "cutlass_4_5", "sycl_tla", "metal-cpp")
# The loader's allow-list (kernels 0.17.2 python_depends.json): general, then per backend.
PYTHON_DEPENDS = {"general": ("einops", "helion", "tvm-ffi"),
                  "cuda": ("nvidia-cutlass-dsl",), "neuron": ("nki",), "xpu": ("onednn",)}
HF_FAMILIES = ("cpu", "cuda", "metal", "neuron", "rocm", "tpu", "xpu")  # kernel backends HF's own format has
GENERAL_BACKEND_TABLES = ("cuda", "neuron", "xpu", "tpu")  # [general.<family>] tables HF's format has
_GENERAL_KEYS = {"name", "version", "edition", "license", "upstream", "source", "backends", "hub",
                 "kernel-depends", "python-depends", *GENERAL_BACKEND_TABLES}
_TORCH_KEYS = {"src", "include", "pyext", "minver", "maxver", "cxx-flags", "stable-abi"}
_NOARCH_KEYS = {"pyext", "cuda_capabilities", "rocm_archs"}
_TOP_KEYS = {"general", "torch", "torch-noarch", "kernel"}


def kernel_keys(family: str) -> set[str] | None:
    """Keys a [kernel.*] table of `family` accepts (None: not a kernel backend of the format)."""
    if backends.is_built(family):
        return COMMON_KERNEL_KEYS | set(backends.get(family).kernel_keys)
    extra = FORMAT_ONLY_KERNEL_KEYS.get(family)
    return None if extra is None else COMMON_KERNEL_KEYS | extra


def kernel_backends() -> tuple[str, ...]:
    return tuple(sorted(set(backends.families()) | set(FORMAT_ONLY_KERNEL_KEYS)))


# --------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------


class _Reader:
    """Validates one parsed build.toml, pointing errors at the line the offending key is on."""

    def __init__(self, path: Path, text: str):
        self.path, self.text = path, text
        self._index: limits.LineIndex | None = None  # built on the first error or note
        self.notes: list[str] = []  # lint-level findings: one line each, printed as `note: ...`

    def note(self, key: str, problem: str, value=None):
        line = self.line_of(key)
        shown_key, problem = limits.fitted(key, problem, value)
        self.notes.append(f"{self.path}{f':{line}' if line else ''}: {shown_key}: {problem}")

    def fail(self, key: str, problem: str, value=None):
        """Stop with one line: keys and values are the file's own, so they are cut and escaped to fit it."""
        raise ConfigError(self.path, *limits.fitted(key, problem, value), self.line_of(key))

    def line_of(self, dotted: str) -> int | None:
        if self._index is None:
            self._index = limits.LineIndex(self.text)
        return self._index.line_of(dotted)

    # --- typed getters --------------------------------------------------------------------------
    def check_keys(self, table: dict, allowed: set, prefix: str):
        for k in table:
            if k not in allowed:
                self.fail(f"{prefix}.{k}" if prefix else k,
                          f"unknown key; allowed here: {', '.join(sorted(allowed))}")

    def string(self, table: dict, key: str, prefix: str, required=False, pattern=None, what=""):
        if key not in table:
            if required:
                self.fail(f"{prefix}.{key}", "missing required key")
            return None
        v = table[key]
        if not isinstance(v, str):
            self.fail(f"{prefix}.{key}", "must be a string", v)
        if pattern is not None and not pattern.fullmatch(v):
            self.fail(f"{prefix}.{key}", f"must be {what}", v)
        return v

    def str_list(self, table: dict, key: str, prefix: str, required=False, non_empty=False, unique=False,
                 paths=False, dedupe=False):
        """A list of strings. A repeated entry is an error with `unique`; with `dedupe` (what HF's parser
        accepts) it is dropped with a note, the first spelling kept."""
        if key not in table:
            if required:
                self.fail(f"{prefix}.{key}", "missing required key")
            return ()
        v = table[key]
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            self.fail(f"{prefix}.{key}", "must be a list of strings", v)
        if non_empty and not v:
            self.fail(f"{prefix}.{key}", "must not be empty", v)
        if unique or dedupe:
            seen, kept = set(), []
            for x in v:
                norm = posixpath.normpath(x) if paths else x
                what = "lists the same " + ("path" if paths else "entry") + " twice"
                if norm in seen and not dedupe:
                    self.fail(f"{prefix}.{key}", what, x)
                if norm in seen:
                    self.note(f"{prefix}.{key}", what + "; the repeat is ignored", x)
                    continue
                seen.add(norm)
                kept.append(x)
            v = kept
        if key.endswith("-flags"):  # every backend's flag list: cxx-, cuda-, ascendc-, hip-, sycl-flags
            for i, flag in enumerate(v):
                problem = flag_problem(v, i)
                if problem:
                    self.fail(f"{prefix}.{key}", problem, flag)
        return tuple(v)

    def version(self, table: dict, key: str, prefix: str):
        v = self.string(table, key, prefix)
        if v is not None and not VERSION_RE.fullmatch(v):
            self.fail(f"{prefix}.{key}", "must be a version like \"2.8\" or \"12.8\"", v)
        return v


def _vtuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


def load_project(root: Path | str) -> Project:
    """Parse and validate `<root>/build.toml` and every path it names. Raises ConfigError."""
    try:
        root = Path(root).resolve()
        path = root / "build.toml"
        found = path.is_file()
    except (OSError, ValueError, RuntimeError) as e:  # a name too long, a NUL byte, a symlink loop
        why = e.strerror if isinstance(e, OSError) and e.strerror else \
            "a symlink loop" if isinstance(e, RuntimeError) else "a NUL byte in the path"
        raise ConfigError(limits.shown_key(str(root)), "", f"not a project directory: {why}") from None
    if not found:
        raise ConfigError(path, "", "no build.toml here (is this a kernel project directory?)")
    data, r = _parse(path)
    notes = r.notes
    r.check_keys(data, _TOP_KEYS, "")

    general = _read_general(r, data, notes)
    torch = noarch = None
    if "torch" in data and "torch-noarch" in data:
        r.fail("torch-noarch", "a project has either [torch] (compiled) or [torch-noarch] (pure Python), not both")
    if "torch" in data:
        torch = _read_torch(r, data["torch"], general)
    elif "torch-noarch" in data:
        noarch = _read_noarch(r, data["torch-noarch"])
    else:
        r.fail("torch", "missing: add [torch] (compiled extension) or [torch-noarch] (pure Python)")

    kernels = _read_kernels(r, data.get("kernel", {}), general, notes)
    if torch is not None and not kernels:
        r.fail("kernel", "[torch] needs at least one [kernel.<name>] table (use [torch-noarch] for pure Python)")
    if noarch is not None and kernels:
        r.fail("kernel", "[torch-noarch] projects have no compiled [kernel.*] tables")

    project = Project(root=root, file=path, general=general, torch=torch, noarch=noarch,
                      kernels=kernels, notes=tuple(notes), text=r.text)
    _check_paths(r, project)
    return project


def _parse(path: Path) -> tuple[dict, _Reader]:
    """build.toml read within the limits (limits.py): a hostile file ends here as one short line."""
    if not path.resolve().is_relative_to(path.parent):
        raise ConfigError(path, "", "is a symlink leaving the project")
    text = limits.read_text(path)
    r = _Reader(path, text)
    deep = limits.deep_line(text)
    if deep is not None:
        raise ConfigError(path, "", f"arrays or tables nested deeper than {limits.MAX_DEPTH} levels", deep)
    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as e:
        m = re.search(r"line (\d+)", str(e))
        raise ConfigError(path, "", f"TOML syntax error: {limits.shown_key(str(e))}", int(m.group(1)) if m else None) from None
    except ValueError:  # Python refuses to convert an integer of more than 4300 digits
        m = re.search(r"[=\[,]\s*[+-]?(?:0[xob])?[0-9a-fA-F_]{4300,}", text)
        raise ConfigError(path, "", "a number of more than 4300 digits", text.count("\n", 0, m.start()) + 1 if m else None) from None
    found = limits.value_problem(data)
    if found:
        r.fail(*found)
    return data, r


def _read_general(r: _Reader, data: dict, notes: list[str]) -> General:
    g = data.get("general")
    if not isinstance(g, dict):
        r.fail("general", "missing [general] table")
    r.check_keys(g, _GENERAL_KEYS, "general")
    edition = g.get("edition", 4)
    if not isinstance(edition, int) or isinstance(edition, bool):
        r.fail("general.edition", "must be an integer", edition)
    if edition not in (4, 5):
        r.fail("general.edition", "unsupported edition; kernel-builder reads editions 4 and 5", edition)
    if edition == 4:
        notes.append(f"{r.path}: edition 4 (no `edition` key): read as edition 5; add `edition = 5` to silence this")
    if isinstance(g.get("name"), str) and len(g["name"]) > limits.MAX_NAME:
        r.fail("general.name", f"longer than {limits.MAX_NAME} characters", g["name"])
    name = r.string(g, "name", "general", required=True, pattern=NAME_RE,
                    what="lowercase letters, digits and dashes, starting with a letter, not ending with a dash")
    version = g.get("version")
    if version is None and edition >= 5:
        r.fail("general.version", "missing required key (edition 5 needs the major API version, e.g. version = 1)")
    if version is not None and (not isinstance(version, int) or isinstance(version, bool) or version < 0):
        r.fail("general.version", "must be a non-negative integer (the major API version)", version)
    license_ = r.string(g, "license", "general", required=True)
    if not license_.strip():
        r.note("general.license", "is empty: the package carries no license", license_)
    families = r.str_list(g, "backends", "general", required=True, non_empty=True, dedupe=True)
    for b in families:
        if b not in ALL_BACKENDS:
            r.fail("general.backends", f"unknown backend; known: {', '.join(ALL_BACKENDS)}", b)
    for key in ("upstream", "source"):
        _read_url(r, g, key)
    pydeps = r.str_list(g, "python-depends", "general", dedupe=True)
    for d in pydeps:
        if d not in PYTHON_DEPENDS["general"]:
            r.fail("general.python-depends", "not on the loader's allow-list "
                   f"({', '.join(PYTHON_DEPENDS['general'])}; backend-specific ones go under [general.<backend>])", d)
    r.str_list(g, "kernel-depends", "general")
    backend_pydeps, backend_tables = _read_backend_tables(r, g)
    hub = Hub()
    if "hub" in g:
        h = g["hub"]
        if not isinstance(h, dict):
            r.fail("general.hub", "must be a table", h)
        r.check_keys(h, {"repo-id", "branch"}, "general.hub")
        hub = Hub(repo_id=r.string(h, "repo-id", "general.hub", pattern=REPO_ID_RE, what="of the form org/name"),
                  branch=r.string(h, "branch", "general.hub"))
    return General(name=name, version=version, edition=edition, license=license_, backends=families,
                   upstream=g.get("upstream"), source=g.get("source"), python_depends=pydeps,
                   backend_python_depends=backend_pydeps, hub=hub, backend_tables=backend_tables)


def _read_url(r: _Reader, g: dict, key: str) -> None:
    """general.upstream / general.source: an http(s) URL, or (with a note) any git URL HF's parser takes."""
    v = r.string(g, key, "general")
    if v is None or HTTP_URL_RE.fullmatch(v):
        return
    if not GIT_URL_RE.fullmatch(v):
        r.fail(f"general.{key}", "must be an http(s) or git URL (git+https://, ssh://, git@host:path)", v)
    r.note(f"general.{key}", "is a git URL, not an http(s) one: kept as written, links to it may not open", v)


def _read_backend_tables(r: _Reader, g: dict) -> tuple[dict, dict]:
    """[general.<family>]: its python-depends (the loader's per-backend allow-list) and, for a family we build,
    the keys its backend reads (e.g. cuda's minver / maxver)."""
    backend_pydeps, backend_tables = {}, {}
    for bk in GENERAL_BACKEND_TABLES:
        if bk not in g:
            continue
        t, prefix = g[bk], f"general.{bk}"
        if not isinstance(t, dict):
            r.fail(prefix, "must be a table", t)
        backend = backends.get(bk) if backends.is_built(bk) else None
        r.check_keys(t, {"python-depends", "kernel-depends"} | set(backend.general_keys if backend else ()), prefix)
        deps = r.str_list(t, "python-depends", prefix, dedupe=True)
        for d in deps:
            if d not in PYTHON_DEPENDS.get(bk, ()):
                r.fail(f"{prefix}.python-depends", "not on the loader's allow-list for this backend "
                       f"({', '.join(PYTHON_DEPENDS.get(bk, ())) or 'none'})", d)
        backend_pydeps[bk] = deps
        if backend is not None:
            backend_tables[bk] = backend.read_general(r, prefix, t)
    return backend_pydeps, backend_tables


def _read_torch(r: _Reader, t, general: General) -> TorchExt:
    if not isinstance(t, dict):
        r.fail("torch", "must be a table", t)
    r.check_keys(t, _TORCH_KEYS, "torch")
    src = r.str_list(t, "src", "torch", required=True, non_empty=True, dedupe=True, paths=True)
    if not any(PurePosixPath(s).suffix in SOURCE_SUFFIXES for s in src):
        r.fail("torch.src", "names no C++ source (.cpp/.cc) to compile the binding from", list(src))
    pyext = r.str_list(t, "pyext", "torch", dedupe=True) or ("py", "pyi")
    for e in pyext:
        if not re.fullmatch(r"[A-Za-z0-9]+", e):
            r.fail("torch.pyext", "entries are file extensions without the dot", e)
    minver, maxver = r.version(t, "minver", "torch"), r.version(t, "maxver", "torch")
    if minver and maxver and _vtuple(minver) > _vtuple(maxver):
        r.fail("torch.minver", f"is above maxver {maxver}", minver)
    stable = _read_stable_abi(r, t["stable-abi"], general) if "stable-abi" in t else {}
    return TorchExt(src=src, include=r.str_list(t, "include", "torch", dedupe=True, paths=True), pyext=pyext,
                    minver=minver, maxver=maxver, cxx_flags=r.str_list(t, "cxx-flags", "torch"), stable_abi=stable)


def _read_stable_abi(r: _Reader, s, general: General) -> dict:
    """torch.stable-abi: one version for every backend, or a table backend = version. A backend that
    general.backends does not list is never built: ignored, with a note (HF's parser accepts it)."""
    stable = {}
    if isinstance(s, str):
        if not VERSION_RE.fullmatch(s):
            r.fail("torch.stable-abi", "must be a torch version like \"2.10\"", s)
        stable = {b: s for b in general.backends}
    elif isinstance(s, dict):
        for b, v in s.items():
            if b not in ALL_BACKENDS:
                r.fail(f"torch.stable-abi.{b}", f"unknown backend; known: {', '.join(ALL_BACKENDS)}", b)
            if not isinstance(v, str) or not VERSION_RE.fullmatch(v):
                r.fail(f"torch.stable-abi.{b}", "must be a torch version like \"2.10\"", v)
            if b not in general.backends:
                r.note(f"torch.stable-abi.{b}", f"backend is not listed in general.backends {list(general.backends)}; "
                       "ignored", b)
                continue
            stable[b] = v
    else:
        r.fail("torch.stable-abi", "must be a torch version string or a table backend = version", s)
    for b, v in stable.items():
        if _vtuple(v) < (2, 9):
            r.fail("torch.stable-abi" if isinstance(s, str) else f"torch.stable-abi.{b}",
                   "the torch stable ABI starts at 2.9", v)
    return stable


def _read_noarch(r: _Reader, t) -> TorchNoarch:
    if not isinstance(t, dict):
        r.fail("torch-noarch", "must be a table", t)
    r.check_keys(t, _NOARCH_KEYS, "torch-noarch")
    r.str_list(t, "cuda_capabilities", "torch-noarch")
    r.str_list(t, "rocm_archs", "torch-noarch")
    return TorchNoarch(pyext=r.str_list(t, "pyext", "torch-noarch", dedupe=True) or ("py", "pyi"))


def _read_kernels(r: _Reader, tables, general: General, notes: list[str]) -> tuple[Kernel, ...]:
    if not isinstance(tables, dict):
        r.fail("kernel", "must be a set of [kernel.<name>] tables", tables)
    out = []
    for kname, t in tables.items():
        prefix = f"kernel.{kname}"
        if not KERNEL_TABLE_RE.fullmatch(kname) or len(kname) > limits.MAX_NAME:
            r.fail(prefix, f"kernel names are identifiers (letters, digits, _ and -) of at most {limits.MAX_NAME} "
                   "characters", kname)
        if not isinstance(t, dict):
            r.fail(prefix, "must be a table", t)
        backend = r.string(t, "backend", prefix, required=True)
        allowed = kernel_keys(backend)
        if allowed is None:
            r.fail(f"{prefix}.backend", f"unknown kernel backend; known: {', '.join(kernel_backends())}", backend)
        if backend not in general.backends:
            r.fail(f"{prefix}.backend", f"is not listed in general.backends {list(general.backends)}", backend)
        r.check_keys(t, allowed, prefix)
        depends = r.str_list(t, "depends", prefix, required=True, dedupe=True)
        for d in depends:
            if d not in KNOWN_DEPENDS:
                r.fail(f"{prefix}.depends", f"unknown dependency; known: {', '.join(KNOWN_DEPENDS)}", d)
        src = r.str_list(t, "src", prefix, required=True, non_empty=True, dedupe=True, paths=True)
        if backends.is_built(backend):
            options = _read_built_kernel(r, prefix, backend, src, t)
        else:
            options = {k: r.str_list(t, k, prefix) for k in sorted(allowed - COMMON_KERNEL_KEYS) if k in t}
            notes.append(f"{r.path}: [kernel.{kname}] backend {backend!r} is not built by this kernel-builder yet; skipped")
        out.append(Kernel(name=kname, backend=backend, depends=depends, src=src,
                          include=r.str_list(t, "include", prefix, dedupe=True, paths=True),
                          cxx_flags=r.str_list(t, "cxx-flags", prefix), options=options))
    return tuple(out)


def _read_built_kernel(r: _Reader, prefix: str, family: str, src: tuple[str, ...], t: dict) -> dict:
    """Check a kernel's sources against its backend and read the backend's own keys. A file that is no
    source or header of any kind (HF's format takes it: CMake ignores it) is listed but not compiled;
    a src of headers only is a header-only kernel (used by another through include): nothing compiled."""
    impl = backends.get(family)
    for s in src:
        problem = impl.source_problem(s)
        if problem and family in HF_FAMILIES and PurePosixPath(s).suffix not in SOURCE_SUFFIXES | HEADER_SUFFIXES:
            r.note(f"{prefix}.src", f"{problem}: listed, not compiled", s)
        elif problem:
            r.fail(f"{prefix}.src", problem, s)
    if not any(impl.compiles(s) for s in src):
        r.note(f"{prefix}.src", impl.no_source_note, list(src))
    return impl.read_kernel(r, prefix, t)


def _check_paths(r: _Reader, p: Project) -> None:
    """Every path must exist and stay inside the project once symlinks are resolved: a build never reads
    (compiles, hashes, or copies into the variant) a file outside what it was given. A table of a backend
    we do not build is never read, so only its paths' spelling is checked."""
    checked = set()  # (path, kind): 10,000 kernel tables may name the same file
    for key, rel, want_dir, built in _named_paths(p):
        if (rel, want_dir, built) in checked:
            continue
        checked.add((rel, want_dir, built))
        problem = limits.path_problem(rel)
        if problem is None and (rel.startswith("/") or ".." in PurePosixPath(rel).parts):
            problem = "must be a relative path inside the project"
        if problem is None:
            problem = _escape(p.root, p.root / rel)
        if problem is None and built and not ((p.root / rel).is_dir() if want_dir else (p.root / rel).is_file()):
            problem = "directory does not exist" if want_dir else "file does not exist"
        if problem:
            r.fail(key, problem, rel)
    if not (p.package_dir / "__init__.py").is_file():
        r.fail("general.name", f"the Python package torch-ext/{p.general.module}/__init__.py is missing",
               p.general.name)
    below = [("general.name", "a file of the Python package", p.package_files())]
    below += [(key, "a header below this include directory", p.header_files([d])) for key, d in _include_keys(p)]
    for key, what, files in below:
        for f in files:
            problem = _escape(p.root, f)
            if problem:
                r.fail(key, f"{what} {problem}", f.relative_to(p.root).as_posix())


def _named_paths(p: Project):
    """(key, path, is a directory, read by a build) of every path build.toml names."""
    for s in (p.torch.src if p.torch else ()):
        yield "torch.src", s, False, True
    for s in (p.torch.include if p.torch else ()):
        yield "torch.include", s, True, True
    for k in p.kernels:
        built = backends.is_built(k.backend)
        yield from ((f"kernel.{k.name}.src", s, False, built) for s in k.src)
        yield from ((f"kernel.{k.name}.include", s, True, built) for s in k.include)


def _include_keys(p: Project):
    """(key, include directory) of every include directory a build passes to a compiler, once each."""
    seen = set()
    for key, rel, want_dir, built in _named_paths(p):
        if want_dir and built and rel not in seen:
            seen.add(rel)
            yield key, rel


def _escape(root: Path, path: Path) -> str | None:
    """Why `path` is outside `root` once every symlink on the way is followed (None: it is inside)."""
    try:
        inside = path.resolve().is_relative_to(root)
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop (Python < 3.13)
        return "cannot be resolved (a symlink loop?)"
    return None if inside else "leaves the project through a symlink"
