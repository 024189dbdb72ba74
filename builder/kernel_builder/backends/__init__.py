"""One module per backend behind one Protocol; `get(family)` returns the implementation.

A backend knows three things: whether this host can build it, the variant it produces here, and the
compiler flags for one kernel. Everything else (planning, ninja, layout) is backend-independent.
"""

from __future__ import annotations

from typing import Protocol

from ..config import Kernel, Project
from ..host import Host
from ..variants import Variant


class Backend(Protocol):
    family: str  # "cpu", "cuda": the value of [kernel.*] backend and metadata backend.type

    def unavailable(self, host: Host) -> str | None:
        """None if this host can build the backend, else a one-line reason."""

    def variant(self, host: Host) -> Variant: ...

    def defines(self) -> list[str]:
        """Defines every translation unit of the variant sees (HF convention: CPU_KERNEL, CUDA_KERNEL)."""

    def kernel_flags(self, project: Project, kernel: Kernel, host: Host, options: dict) -> dict:
        """{"cxx": [...], "nvcc": [...]} for one kernel's sources."""

    def archs(self, project: Project, host: Host, options: dict) -> list[str] | None:
        """metadata.json backend.archs (None where the loader expects none)."""

    def fallback_include_dirs(self, host: Host) -> list[str]:
        """Include directories searched after torch's and the toolkit's own."""

    def toolchain(self, host: Host) -> str:
        """A string that changes whenever the compilers that shape the output change (fingerprint input)."""

    # Optional hooks (build.py uses them when present; cann has them, cpu and cuda do not):
    #   build_extension(plan, host, verbose) -> Path   build the .abi3.so itself (instead of cpp_extension)
    #   variant_extras(plan, so) -> {relpath: bytes}   more files for the variant (may replace _ops.py)
    #   provenance_extra(plan) -> dict                  merged into metadata.json provenance


def get(family: str) -> Backend:
    from . import cann, cpu, cuda

    impls = {"cpu": cpu.CPU(), "cuda": cuda.CUDA(), "cann": cann.CANN()}
    return impls[family]


BUILT = ("cpu", "cuda", "cann")
