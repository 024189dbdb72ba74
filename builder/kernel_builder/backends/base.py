"""What a backend is (the `Backend` Protocol) and the cpp_extension compile path cpu and cuda share.

A backend answers, for its family: which build.toml keys its tables hold (and validates them), which
fields its build-matrix rows hold, whether a host can build it and what variant that host gets, which of
the project's kernels a host builds, the compiler flags of one kernel, and how the variant's extension is
compiled. Two compile paths exist: `CppExtensionBackend` (torch.utils.cpp_extension + ninja, in a child
process: staging.compile_cpp_extension) and the cann backend's own CMake driver.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from ..build import staging
from ..build.host import Host, cxx_version
from ..project.options import BuildOptions
from ..project.model import HEADER_SUFFIXES, SOURCE_SUFFIXES, Kernel, Project
from ..variants import Variant, backend_string


class Backend(Protocol):
    family: str  # general.backends entry, [kernel.*] backend value, metadata.json backend.type
    kernel_keys: frozenset[str]  # keys of its [kernel.*] tables beyond COMMON_KERNEL_KEYS
    general_keys: frozenset[str]  # keys of [general.<family>] beyond python-depends / kernel-depends
    row_keys: frozenset[str]  # keys of its [[env]] rows in matrix.toml beyond the common ones
    scaffold: tuple[str, str] | None  # `init`: (kernel source path with {module}, template), None: not offered
    no_source_note: str  # the note when a kernel's src lists nothing `compiles` accepts (a header-only kernel)
    work_tag: str  # appended to the variant name for its work directory (a twin shares its variant's name)

    # --- build.toml ---
    def source_problem(self, rel: str) -> str | None:
        """Why `rel` may not be listed in a kernel's src (None: it may)."""

    def compiles(self, rel: str) -> bool:
        """Whether `rel` is a source this backend compiles (a kernel with none is header-only: nothing of it
        is compiled, and `no_source_note` is the note naming kernel.<name>.src)."""

    def read_kernel(self, reader, prefix: str, table: dict) -> dict:
        """Kernel.options: this backend's keys of one [kernel.*] table, validated (reader.fail on error)."""

    def read_general(self, reader, prefix: str, table: dict) -> dict:
        """General.backend_tables[family]: its keys of [general.<family>], validated."""

    # --- matrix.toml ---
    def read_row(self, fail, row: dict, image) -> dict:
        """The Host fields a matrix row of this backend fixes (its toolkit version, paths in the image);
        `fail(key, problem)` raises the matrix file's ConfigError."""

    def container_env(self, host: Host) -> dict[str, str]:
        """Environment variables the build container needs for a row of this backend."""

    # --- hosts and variants ---
    def unavailable(self, host: Host) -> str | None:
        """None if `host` (this machine, or a matrix row's image) can build the backend, else why not."""

    def variant(self, host: Host) -> Variant:
        """The compiled variant `host` builds."""

    def can_load(self, variant: Variant, host: Host) -> bool:
        """Whether `host`'s torch can import `variant` (check's import probe runs only then)."""

    def gate(self, project: Project, host: Host) -> str | None:
        """Why the project's own version limits ([general.<family>] minver, ...) exclude `host`, or None."""

    def select_kernels(self, project: Project, kernels: tuple[Kernel, ...], host: Host,
                       options: BuildOptions) -> tuple[tuple[Kernel, ...], list[str]]:
        """The kernels `host` builds, and one-line notes for those it skips; UsageError when none can be."""

    # --- planning ---
    def defines(self) -> list[str]:
        """Defines every translation unit of the variant sees (HF convention: CPU_KERNEL, CUDA_KERNEL)."""

    def kernel_flags(self, project: Project, kernel: Kernel, host: Host, options: BuildOptions) -> dict:
        """{"cxx": [...], "nvcc": [...]} for one kernel's sources."""

    def archs(self, project: Project, host: Host, options: BuildOptions) -> list[str] | None:
        """metadata.json backend.archs (None where the loader expects none)."""

    def fallback_include_dirs(self, host: Host) -> list[str]:
        """Include directories searched after torch's and the toolkit's own."""

    def toolchain(self, host: Host) -> str:
        """A string that changes whenever the compilers that shape the output change (fingerprint input)."""

    # --- doing ---
    def build_extension(self, plan, host: Host, verbose: bool) -> Path:
        """Compile the variant's extension; returns the staged `<id>.abi3.so`."""

    def variant_extras(self, plan, so: Path) -> dict[str, bytes]:
        """More files for the variant beside the extension (may replace _ops.py)."""

    def provenance_extra(self, plan) -> dict:
        """Merged into metadata.json provenance."""


def compiled_variant(host: Host, backend: str) -> Variant:
    """torch<XY>[-cxx11]-<backend>-<arch>-<os>: the C++ ABI tag exists on Linux only."""
    return Variant("torch", backend, host.torch_mm, host.cxx11_abi if host.os == "linux" else None, host.arch, host.os)


class CppExtensionBackend:
    """Defaults for a backend compiled by torch.utils.cpp_extension: a subclass names its extension class
    (CppExtension, CUDAExtension), its defines and flags; every hook it does not need is a no-op here."""

    family = ""
    extension = "CppExtension"
    kernel_keys: frozenset[str] = frozenset()
    general_keys: frozenset[str] = frozenset()
    row_keys: frozenset[str] = frozenset()
    scaffold: tuple[str, str] | None = None
    allowed_suffixes = SOURCE_SUFFIXES | HEADER_SUFFIXES
    no_source_note = "names no source file to compile (only headers): a header-only kernel, nothing compiled"
    work_tag = ""

    def source_problem(self, rel: str) -> str | None:
        if Path(rel).suffix not in self.allowed_suffixes:
            return "is neither a C/C++/CUDA source nor a header"
        return None

    def compiles(self, rel: str) -> bool:
        return Path(rel).suffix in SOURCE_SUFFIXES

    def read_kernel(self, reader, prefix: str, table: dict) -> dict:
        return {}

    def read_general(self, reader, prefix: str, table: dict) -> dict:
        return {}

    def read_row(self, fail, row: dict, image) -> dict:
        return {}

    def container_env(self, host: Host) -> dict[str, str]:
        return {}

    def unavailable(self, host: Host) -> str | None:
        return None

    def variant(self, host: Host) -> Variant:
        return compiled_variant(host, backend_string(self.family))

    def can_load(self, variant: Variant, host: Host) -> bool:
        return variant.backend_type == self.family

    def gate(self, project: Project, host: Host) -> str | None:
        return None

    def select_kernels(self, project, kernels, host, options):
        return tuple(kernels), []

    def defines(self) -> list[str]:
        return []

    def kernel_flags(self, project, kernel, host, options) -> dict:
        return {"cxx": list(kernel.cxx_flags), "nvcc": []}

    def archs(self, project, host, options) -> list[str] | None:
        return None

    def fallback_include_dirs(self, host: Host) -> list[str]:
        return []

    def toolchain(self, host: Host) -> str:
        return cxx_version()

    def compile_env(self, plan, host: Host) -> dict[str, str]:
        """Environment of the compile child beyond ours (CUDA_HOME, ...)."""
        return {}

    # flags cpp_extension adds on its own (COMMON_NVCC_FLAGS) that this backend's builds must not get
    torch_flags_dropped: tuple[str, ...] = ()

    def build_extension(self, plan, host: Host, verbose: bool) -> Path:
        return staging.compile_cpp_extension(plan, self.extension, self.compile_env(plan, host), verbose,
                                             drop_torch_flags=self.torch_flags_dropped)

    def variant_extras(self, plan, so: Path) -> dict[str, bytes]:
        return {}

    def provenance_extra(self, plan) -> dict:
        return {}
