"""build.toml -> typed, validated objects.

The format is Hugging Face's (editions 4 and 5, see CONTRACT.md §1) plus our own Ascend C kernel
tables. Everything is validated here, before anything is compiled or written, so a build either
starts from a consistent project or stops with one line naming file, line, key and value.
"""

from __future__ import annotations

import posixpath
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from .cann_versions import CANN_SRC_SUFFIXES, KNOWN_SOCS
from .errors import ConfigError

NAME_RE = re.compile(r"^[a-z][-a-z0-9]*[a-z0-9]$")
KERNEL_TABLE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
VERSION_RE = re.compile(r"^\d+\.\d+(\.\d+)?$")
CAPABILITY_RE = re.compile(r"^(\d+)\.(\d+)([af]?)(\+PTX)?$")
REPO_ID_RE = re.compile(r"^[A-Za-z0-9][-A-Za-z0-9_.]*/[A-Za-z0-9][-A-Za-z0-9_.]*$")

ALL_BACKENDS = ("cann", "cpu", "cuda", "metal", "neuron", "rocm", "tpu", "xpu")
# Backends whose [kernel.*] tables we compile; the rest are parsed and skipped with a warning.
BUILT_KERNEL_BACKENDS = ("cpu", "cuda")  # compiled by cpp_extension (source suffix rules below)
BUILDABLE_KERNEL_BACKENDS = BUILT_KERNEL_BACKENDS + ("cann",)  # cann: CMake + CANN (backends/cann.py)
KERNEL_BACKENDS = ("cann", "cpu", "cuda", "metal", "rocm", "xpu")
KNOWN_DEPENDS = ("torch", "cutlass_2_10", "cutlass_3_5", "cutlass_3_6", "cutlass_3_8", "cutlass_3_9",
                 "cutlass_4_0", "cutlass_4_4", "cutlass_4_5", "sycl_tla", "metal-cpp")
# The loader's allow-list (kernels 0.17.2 python_depends.json): general, then per backend.
PYTHON_DEPENDS = {"general": ("einops", "helion", "tvm-ffi"),
                  "cuda": ("nvidia-cutlass-dsl",), "neuron": ("nki",), "xpu": ("onednn",)}
SOURCE_SUFFIXES = {".cpp", ".cc", ".cxx", ".c", ".cu"}
HEADER_SUFFIXES = {".h", ".hh", ".hpp", ".cuh", ".inc", ".inl"}

# Keys each table accepts, per kernel backend (the tag `backend` included).
_KERNEL_KEYS = {
    "cpu": {"backend", "depends", "src", "include", "cxx-flags"},
    "cuda": {"backend", "depends", "src", "include", "cxx-flags", "cuda-capabilities", "cuda-flags", "cuda-minver"},
    "rocm": {"backend", "depends", "src", "include", "cxx-flags", "rocm-archs", "hip-flags"},
    "xpu": {"backend", "depends", "src", "include", "cxx-flags", "sycl-flags"},
    "metal": {"backend", "depends", "src", "include", "cxx-flags"},
    "cann": {"backend", "depends", "src", "include", "cxx-flags", "soc-versions", "ascendc-flags"},
}
_GENERAL_KEYS = {"name", "version", "edition", "license", "upstream", "source", "backends", "cuda", "hub",
                 "kernel-depends", "neuron", "python-depends", "tpu", "xpu"}
_TORCH_KEYS = {"src", "include", "pyext", "minver", "maxver", "cxx-flags", "stable-abi"}
_NOARCH_KEYS = {"pyext", "cuda_capabilities", "rocm_archs"}
_TOP_KEYS = {"general", "torch", "torch-noarch", "kernel"}


@dataclass(frozen=True)
class Hub:
    repo_id: str | None = None
    branch: str | None = None


@dataclass(frozen=True)
class General:
    name: str
    version: int | None
    edition: int
    license: str
    backends: tuple[str, ...]
    upstream: str | None = None
    source: str | None = None
    python_depends: tuple[str, ...] = ()
    backend_python_depends: dict = field(default_factory=dict)
    hub: Hub = Hub()
    cuda_minver: str | None = None
    cuda_maxver: str | None = None

    @property
    def module(self) -> str:
        """Python module name: the loader imports the package under its id, but names things after this."""
        return self.name.replace("-", "_")


@dataclass(frozen=True)
class TorchExt:
    src: tuple[str, ...]
    include: tuple[str, ...] = ()
    pyext: tuple[str, ...] = ("py", "pyi")
    minver: str | None = None
    maxver: str | None = None
    cxx_flags: tuple[str, ...] = ()
    stable_abi: dict = field(default_factory=dict)  # backend -> "X.Y"


@dataclass(frozen=True)
class TorchNoarch:
    pyext: tuple[str, ...] = ("py", "pyi")


@dataclass(frozen=True)
class Kernel:
    name: str
    backend: str
    depends: tuple[str, ...]
    src: tuple[str, ...]
    include: tuple[str, ...] = ()
    cxx_flags: tuple[str, ...] = ()
    cuda_capabilities: tuple[str, ...] = ()
    cuda_flags: tuple[str, ...] = ()
    cuda_minver: str | None = None
    other: dict = field(default_factory=dict)  # keys of backends we parse but do not build yet

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(s for s in self.src if PurePosixPath(s).suffix in SOURCE_SUFFIXES)


@dataclass(frozen=True)
class Project:
    root: Path
    file: Path
    general: General
    torch: TorchExt | None
    noarch: TorchNoarch | None
    kernels: tuple[Kernel, ...]
    notes: tuple[str, ...] = ()  # one-line warnings (skipped kernel tables, edition upgrade, ...)

    def kernels_for(self, backend: str) -> tuple[Kernel, ...]:
        return tuple(k for k in self.kernels if k.backend == backend)

    @property
    def package_dir(self) -> Path:
        return self.root / "torch-ext" / self.general.module

    def all_inputs(self) -> list[Path]:
        """Every file whose bytes decide what a build produces (for fingerprints and no-op detection)."""
        files = {self.file}
        for rel in (self.torch.src if self.torch else ()):
            files.add(self.root / rel)
        for k in self.kernels:
            files.update(self.root / rel for rel in k.src)
        for inc in self._include_dirs():
            if inc.is_dir():
                files.update(p for p in inc.rglob("*") if p.is_file() and p.suffix in HEADER_SUFFIXES)
        if self.package_dir.is_dir():
            files.update(p for p in self.package_dir.rglob("*") if p.is_file() and _is_package_file(p, self))
        return sorted(files)

    def _include_dirs(self) -> list[Path]:
        dirs = [self.root / i for i in (self.torch.include if self.torch else ())]
        for k in self.kernels:
            dirs += [self.root / i for i in k.include]
        return dirs


def _is_package_file(p: Path, project: Project) -> bool:
    if "__pycache__" in p.parts or p.suffix == ".pyc":
        return False
    pyext = project.torch.pyext if project.torch else (project.noarch.pyext if project.noarch else ("py",))
    return p.suffix.lstrip(".") in pyext or p.suffix == ".py"


# --------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------


class _Reader:
    """Validates one parsed build.toml, pointing errors at the line the offending key is on."""

    def __init__(self, path: Path, text: str):
        self.path, self.text = path, text
        self.lines = text.splitlines()

    def fail(self, key: str, problem: str, value=None):
        if value is not None:
            problem = f"{problem} (got {value!r})"
        raise ConfigError(self.path, key, problem, self.line_of(key))

    def line_of(self, dotted: str) -> int | None:
        """Best-effort line of `a.b.c`: its own table header `[a.b.c]`, else the `c = ` (or dotted
        `b.c = `) line inside the enclosing table, else the enclosing table's header."""
        parts = dotted.split(".") if dotted else []
        if not parts:
            return None
        for i, line in enumerate(self.lines):
            if line.strip().startswith("[") and _header_name(line.strip()) == parts:
                return i + 1
        for split in range(len(parts) - 1, -1, -1):
            table, rest = parts[:split], parts[split:]
            inside, header = not table, None
            for i, line in enumerate(self.lines):
                s = line.strip()
                if s.startswith("["):
                    inside = _header_name(s) == table
                    if inside and header is None:
                        header = i + 1
                    continue
                key = _assigned_key(s)
                if inside and key and key == rest[:len(key)]:
                    return i + 1
            if header is not None:
                return header
        return None

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
        if pattern is not None and not pattern.match(v):
            self.fail(f"{prefix}.{key}", f"must be {what}", v)
        return v

    def str_list(self, table: dict, key: str, prefix: str, required=False, non_empty=False, unique=False,
                 paths=False):
        if key not in table:
            if required:
                self.fail(f"{prefix}.{key}", "missing required key")
            return ()
        v = table[key]
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            self.fail(f"{prefix}.{key}", "must be a list of strings", v)
        if non_empty and not v:
            self.fail(f"{prefix}.{key}", "must not be empty", v)
        if unique:
            seen = set()
            for x in v:
                norm = posixpath.normpath(x) if paths else x
                if norm in seen:
                    self.fail(f"{prefix}.{key}", "lists the same " + ("path" if paths else "entry") + " twice", x)
                seen.add(norm)
        return tuple(v)

    def version(self, table: dict, key: str, prefix: str):
        v = self.string(table, key, prefix)
        if v is not None and not VERSION_RE.match(v):
            self.fail(f"{prefix}.{key}", "must be a version like \"2.8\" or \"12.8\"", v)
        return v


def _header_name(line: str) -> list[str] | None:
    m = re.match(r"^\[\[?\s*([^\]]+?)\s*\]\]?", line)
    if not m:
        return None
    return [p.strip().strip('"\'') for p in m.group(1).split(".")]


def _assigned_key(line: str) -> list[str] | None:
    """`a."b c".d = 1` -> ["a", "b c", "d"]; None for lines that assign nothing."""
    m = re.match(r'^((?:[A-Za-z0-9_-]+|"[^"]*"|\'[^\']*\')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|\'[^\']*\'))*)\s*=', line)
    if not m:
        return None
    return [p.strip().strip('"\'') for p in re.findall(r'[A-Za-z0-9_-]+|"[^"]*"|\'[^\']*\'', m.group(1))]


def _vtuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


def load_project(root: Path | str) -> Project:
    """Parse and validate `<root>/build.toml` and every path it names. Raises ConfigError."""
    root = Path(root).resolve()
    path = root / "build.toml"
    if not path.is_file():
        raise ConfigError(path, "", "no build.toml here (is this a kernel project directory?)")
    text = path.read_text(encoding="utf-8", errors="replace")
    r = _Reader(path, text)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"line (\d+)", str(e))
        raise ConfigError(path, "", f"TOML syntax error: {e}", int(m.group(1)) if m else None) from None
    notes: list[str] = []
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
                      kernels=kernels, notes=tuple(notes))
    _check_paths(r, project)
    return project


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
    name = r.string(g, "name", "general", required=True, pattern=NAME_RE,
                    what="lowercase letters, digits and dashes, starting with a letter, not ending with a dash")
    version = g.get("version")
    if version is None and edition >= 5:
        r.fail("general.version", "missing required key (edition 5 needs the major API version, e.g. version = 1)")
    if version is not None and (not isinstance(version, int) or isinstance(version, bool) or version < 0):
        r.fail("general.version", "must be a non-negative integer (the major API version)", version)
    license_ = r.string(g, "license", "general", required=True)
    if not license_.strip():
        r.fail("general.license", "must not be empty", license_)
    backends = r.str_list(g, "backends", "general", required=True, non_empty=True, unique=True)
    for b in backends:
        if b not in ALL_BACKENDS:
            r.fail("general.backends", f"unknown backend; known: {', '.join(ALL_BACKENDS)}", b)
    for key in ("upstream", "source"):
        v = r.string(g, key, "general")
        if v is not None and not re.match(r"^https?://\S+$", v):
            r.fail(f"general.{key}", "must be an http(s) URL", v)
    pydeps = r.str_list(g, "python-depends", "general", unique=True)
    for d in pydeps:
        if d not in PYTHON_DEPENDS["general"]:
            r.fail("general.python-depends", "not on the loader's allow-list "
                   f"({', '.join(PYTHON_DEPENDS['general'])}; backend-specific ones go under [general.<backend>])", d)
    r.str_list(g, "kernel-depends", "general")
    backend_pydeps = {}
    cuda_minver = cuda_maxver = None
    for bk in ("cuda", "neuron", "xpu", "tpu"):
        if bk not in g:
            continue
        t = g[bk]
        if not isinstance(t, dict):
            r.fail(f"general.{bk}", "must be a table", t)
        allowed = {"python-depends", "kernel-depends"} | ({"minver", "maxver"} if bk == "cuda" else set())
        r.check_keys(t, allowed, f"general.{bk}")
        deps = r.str_list(t, "python-depends", f"general.{bk}", unique=True)
        for d in deps:
            if d not in PYTHON_DEPENDS.get(bk, ()):
                r.fail(f"general.{bk}.python-depends", "not on the loader's allow-list for this backend "
                       f"({', '.join(PYTHON_DEPENDS.get(bk, ())) or 'none'})", d)
        backend_pydeps[bk] = deps
        if bk == "cuda":
            cuda_minver = r.version(t, "minver", "general.cuda")
            cuda_maxver = r.version(t, "maxver", "general.cuda")
            if cuda_minver and cuda_maxver and _vtuple(cuda_minver) > _vtuple(cuda_maxver):
                r.fail("general.cuda.minver", f"is above maxver {cuda_maxver}", cuda_minver)
    hub = Hub()
    if "hub" in g:
        h = g["hub"]
        if not isinstance(h, dict):
            r.fail("general.hub", "must be a table", h)
        r.check_keys(h, {"repo-id", "branch"}, "general.hub")
        hub = Hub(repo_id=r.string(h, "repo-id", "general.hub", pattern=REPO_ID_RE, what="of the form org/name"),
                  branch=r.string(h, "branch", "general.hub"))
    return General(name=name, version=version, edition=edition, license=license_, backends=backends,
                   upstream=g.get("upstream"), source=g.get("source"), python_depends=pydeps,
                   backend_python_depends=backend_pydeps, hub=hub, cuda_minver=cuda_minver, cuda_maxver=cuda_maxver)


def _read_torch(r: _Reader, t, general: General) -> TorchExt:
    if not isinstance(t, dict):
        r.fail("torch", "must be a table", t)
    r.check_keys(t, _TORCH_KEYS, "torch")
    src = r.str_list(t, "src", "torch", required=True, non_empty=True, unique=True, paths=True)
    if not any(PurePosixPath(s).suffix in SOURCE_SUFFIXES for s in src):
        r.fail("torch.src", "names no C++ source (.cpp/.cc) to compile the binding from", list(src))
    pyext = r.str_list(t, "pyext", "torch", unique=True) or ("py", "pyi")
    for e in pyext:
        if not re.match(r"^[A-Za-z0-9]+$", e):
            r.fail("torch.pyext", "entries are file extensions without the dot", e)
    minver, maxver = r.version(t, "minver", "torch"), r.version(t, "maxver", "torch")
    if minver and maxver and _vtuple(minver) > _vtuple(maxver):
        r.fail("torch.minver", f"is above maxver {maxver}", minver)
    stable = {}
    if "stable-abi" in t:
        s = t["stable-abi"]
        if isinstance(s, str):
            if not VERSION_RE.match(s):
                r.fail("torch.stable-abi", "must be a torch version like \"2.10\"", s)
            stable = {b: s for b in general.backends}
        elif isinstance(s, dict):
            for b, v in s.items():
                if b not in ALL_BACKENDS:
                    r.fail(f"torch.stable-abi.{b}", f"unknown backend; known: {', '.join(ALL_BACKENDS)}", b)
                if not isinstance(v, str) or not VERSION_RE.match(v):
                    r.fail(f"torch.stable-abi.{b}", "must be a torch version like \"2.10\"", v)
                if b not in general.backends:
                    r.fail(f"torch.stable-abi.{b}", f"backend is not listed in general.backends {list(general.backends)}", b)
                stable[b] = v
        else:
            r.fail("torch.stable-abi", "must be a torch version string or a table backend = version", s)
        for b, v in stable.items():
            if _vtuple(v) < (2, 9):
                r.fail("torch.stable-abi" if isinstance(s, str) else f"torch.stable-abi.{b}",
                       "the torch stable ABI starts at 2.9", v)
    return TorchExt(src=src, include=r.str_list(t, "include", "torch", unique=True, paths=True), pyext=pyext,
                    minver=minver, maxver=maxver, cxx_flags=r.str_list(t, "cxx-flags", "torch"), stable_abi=stable)


def _read_noarch(r: _Reader, t) -> TorchNoarch:
    if not isinstance(t, dict):
        r.fail("torch-noarch", "must be a table", t)
    r.check_keys(t, _NOARCH_KEYS, "torch-noarch")
    r.str_list(t, "cuda_capabilities", "torch-noarch")
    r.str_list(t, "rocm_archs", "torch-noarch")
    return TorchNoarch(pyext=r.str_list(t, "pyext", "torch-noarch", unique=True) or ("py", "pyi"))


def _read_kernels(r: _Reader, tables, general: General, notes: list[str]) -> tuple[Kernel, ...]:
    if not isinstance(tables, dict):
        r.fail("kernel", "must be a set of [kernel.<name>] tables", tables)
    out = []
    for kname, t in tables.items():
        prefix = f"kernel.{kname}"
        if not KERNEL_TABLE_RE.match(kname):
            r.fail(prefix, "kernel names are identifiers (letters, digits, _ and -)", kname)
        if not isinstance(t, dict):
            r.fail(prefix, "must be a table", t)
        backend = r.string(t, "backend", prefix, required=True)
        if backend not in KERNEL_BACKENDS:
            r.fail(f"{prefix}.backend", f"unknown kernel backend; known: {', '.join(KERNEL_BACKENDS)}", backend)
        if backend not in general.backends:
            r.fail(f"{prefix}.backend", f"is not listed in general.backends {list(general.backends)}", backend)
        r.check_keys(t, _KERNEL_KEYS[backend], prefix)
        depends = r.str_list(t, "depends", prefix, required=True, unique=True)
        for d in depends:
            if d not in KNOWN_DEPENDS:
                r.fail(f"{prefix}.depends", f"unknown dependency; known: {', '.join(KNOWN_DEPENDS)}", d)
        src = r.str_list(t, "src", prefix, required=True, non_empty=True, unique=True, paths=True)
        for s in src:
            suffix = PurePosixPath(s).suffix
            if backend in BUILT_KERNEL_BACKENDS and suffix not in SOURCE_SUFFIXES | HEADER_SUFFIXES:
                r.fail(f"{prefix}.src", "is neither a C/C++/CUDA source nor a header", s)
            if suffix == ".cu" and backend == "cpu":
                r.fail(f"{prefix}.src", "a CUDA source in a cpu kernel", s)
            if backend == "cann" and suffix not in CANN_SRC_SUFFIXES:
                r.fail(f"{prefix}.src", "a cann kernel compiles Ascend C sources (.cpp, .asc) and headers "
                       "(.h, .hpp) only", s)
        if backend == "cann":
            if not any(PurePosixPath(s).suffix in {".cpp", ".asc"} for s in src):
                r.fail(f"{prefix}.src", "names no Ascend C source (.cpp, .asc) to compile (only headers)", list(src))
            for soc in r.str_list(t, "soc-versions", prefix, non_empty=True, unique=True):
                if soc not in KNOWN_SOCS:
                    r.fail(f"{prefix}.soc-versions", f"unknown Ascend SoC; known: {', '.join(KNOWN_SOCS)}", soc)
        if backend in BUILT_KERNEL_BACKENDS and not any(PurePosixPath(s).suffix in SOURCE_SUFFIXES for s in src):
            r.fail(f"{prefix}.src", "names no source file to compile (only headers)", list(src))
        caps: tuple[str, ...] = ()
        cuda_minver = None
        if backend == "cuda":
            caps = r.str_list(t, "cuda-capabilities", prefix, unique=True)
            for c in caps:
                m = CAPABILITY_RE.match(c)
                if not m or not (3 <= int(m.group(1)) <= 13):
                    r.fail(f"{prefix}.cuda-capabilities",
                           "must be a compute capability like \"8.0\", \"9.0a\" or \"12.0+PTX\"", c)
            cuda_minver = r.version(t, "cuda-minver", prefix)
        other = {}
        for k in sorted(_KERNEL_KEYS[backend] - _KERNEL_KEYS["cpu"] - {"cuda-capabilities", "cuda-flags", "cuda-minver"}):
            if k in t:
                other[k] = r.str_list(t, k, prefix)
        kernel = Kernel(name=kname, backend=backend, depends=depends, src=src,
                        include=r.str_list(t, "include", prefix, unique=True, paths=True),
                        cxx_flags=r.str_list(t, "cxx-flags", prefix),
                        cuda_capabilities=caps, cuda_flags=r.str_list(t, "cuda-flags", prefix) if backend == "cuda" else (),
                        cuda_minver=cuda_minver, other=other)
        if backend not in BUILDABLE_KERNEL_BACKENDS:
            notes.append(f"{r.path}: [kernel.{kname}] backend {backend!r} is not built by this kernel-builder yet; skipped")
        out.append(kernel)
    return tuple(out)


def _check_paths(r: _Reader, p: Project) -> None:
    """Every path must exist and stay inside the project: a build never reads outside what it names."""
    def check(key: str, rel: str, want_dir: bool):
        if rel.startswith("/") or ".." in PurePosixPath(rel).parts:
            r.fail(key, "must be a relative path inside the project", rel)
        full = p.root / rel
        if want_dir and not full.is_dir():
            r.fail(key, "directory does not exist", rel)
        if not want_dir and not full.is_file():
            r.fail(key, "file does not exist", rel)

    if p.torch:
        for s in p.torch.src:
            check("torch.src", s, False)
        for s in p.torch.include:
            check("torch.include", s, True)
    for k in p.kernels:
        if k.backend not in BUILDABLE_KERNEL_BACKENDS:
            continue
        for s in k.src:
            check(f"kernel.{k.name}.src", s, False)
        for s in k.include:
            check(f"kernel.{k.name}.include", s, True)
    if not (p.package_dir / "__init__.py").is_file():
        r.fail("general.name", f"the Python package torch-ext/{p.general.module}/__init__.py is missing",
               p.general.name)
