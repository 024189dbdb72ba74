"""The typed project: what a build.toml says once config.py has validated it.

Kept apart from the reader (config.py) so that backends can name these types without importing the
reader, which itself asks the backend registry what each kernel table may hold.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Mapping

from .limits import LineIndex

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
        """The build.toml line of a key, for errors found after loading (planning asks once per kernel)."""
        return self._lines.line_of(dotted)

    @functools.cached_property
    def _lines(self) -> LineIndex:
        return LineIndex(self.text)

    def all_inputs(self) -> list[Path]:
        """Every file whose bytes decide what a build produces (for fingerprints and no-op detection).
        A file of a kernel table no backend builds may be missing: it is not an input then."""
        files = {self.file}
        for rel in (self.torch.src if self.torch else ()):
            files.add(self.root / rel)
        for k in self.kernels:
            files.update(self.root / rel for rel in k.src)
        files.update(self.header_files(self._include_dirs()))
        files.update(self.package_files())
        return sorted(p for p in files if p.is_file())

    def header_files(self, include_dirs) -> list[Path]:
        """Headers below the include directories (relative to the root) that exist."""
        found = set()
        for inc in dict.fromkeys(self.root / i for i in include_dirs):
            if inc.is_dir():
                found.update(p for p in inc.rglob("*") if p.suffix in HEADER_SUFFIXES and p.is_file())
        return sorted(found)

    def package_files(self) -> list[Path]:
        """The kernel's Python package (torch-ext/<module>/) as the variant holds it: without caches."""
        base = self.package_dir
        if not base.is_dir():
            return []
        return sorted(p for p in base.rglob("*") if "__pycache__" not in p.relative_to(base).parts
                      and _is_package_file(p, self) and p.is_file())

    def _include_dirs(self) -> list[str]:
        dirs = list(self.torch.include if self.torch else ())
        for k in self.kernels:
            dirs += k.include
        return dirs


def _is_package_file(p: Path, project: Project) -> bool:
    if p.suffix == ".pyc":
        return False
    pyext = project.torch.pyext if project.torch else (project.noarch.pyext if project.noarch else ("py",))
    return p.suffix.lstrip(".") in pyext or p.suffix == ".py"
