"""The typed project: what a build.toml says once config.py has validated it.

Kept apart from the reader (config.py) so that backends can name these types without importing the
reader, which itself asks the backend registry what each kernel table may hold.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Mapping

SOURCE_SUFFIXES = {".cpp", ".cc", ".cxx", ".c", ".cu"}
HEADER_SUFFIXES = {".h", ".hh", ".hpp", ".cuh", ".inc", ".inl"}
COMMON_KERNEL_KEYS = frozenset({"backend", "depends", "src", "include", "cxx-flags"})  # every backend's tables


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
    backend_tables: dict = field(default_factory=dict)  # family -> what its backend read from [general.<family>]

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
    # The keys only this kernel's backend knows (cuda-capabilities, soc-versions, ...), as its backend
    # module read and validated them; keyed by their build.toml spelling.
    options: Mapping[str, Any] = field(default_factory=dict)

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
    text: str = field(default="", repr=False, compare=False)  # build.toml as read: errors point at its lines

    def kernels_for(self, backend: str) -> tuple[Kernel, ...]:
        return tuple(k for k in self.kernels if k.backend == backend)

    @property
    def package_dir(self) -> Path:
        return self.root / "torch-ext" / self.general.module

    def line_of(self, dotted: str) -> int | None:
        """The build.toml line of a key, for errors found after loading (planning)."""
        return line_of(self.text.splitlines(), dotted)

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
# Where a key is written: errors name the line
# --------------------------------------------------------------------------------------------------


def line_of(lines: list[str], dotted: str) -> int | None:
    """Best-effort line of `a.b.c`: its own table header `[a.b.c]`, else the `c = ` (or dotted
    `b.c = `) line inside the enclosing table, else the enclosing table's header."""
    parts = dotted.split(".") if dotted else []
    if not parts:
        return None
    for i, line in enumerate(lines):
        if line.strip().startswith("[") and _header_name(line.strip()) == parts:
            return i + 1
    for split in range(len(parts) - 1, -1, -1):
        table, rest = parts[:split], parts[split:]
        inside, header = not table, None
        for i, line in enumerate(lines):
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
