"""The CPU backend: g++ through cpp_extension, nothing but the kernel's own flags on top."""

from __future__ import annotations

import functools
import os
import subprocess

from ..config import Kernel, Project
from ..host import Host
from ..variants import Variant


@functools.lru_cache(maxsize=None)
def cxx_version() -> str:
    """The C++ compiler cpp_extension will use ($CXX, else c++) and its version: a fingerprint input."""
    cxx = os.environ.get("CXX", "c++")
    try:
        out = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30).stdout
        return f"{cxx}: {out.splitlines()[0]}" if out else f"{cxx}: unknown"
    except OSError:
        return f"{cxx}: not found"


class CPU:
    family = "cpu"

    def unavailable(self, host: Host) -> str | None:
        return host.can_build("cpu")

    def variant(self, host: Host) -> Variant:
        return host.variant("cpu")

    def defines(self) -> list[str]:
        return ["-DCPU_KERNEL"]

    def kernel_flags(self, project: Project, kernel: Kernel, host: Host, options: dict) -> dict:
        return {"cxx": list(kernel.cxx_flags), "nvcc": []}

    def archs(self, project: Project, host: Host, options: dict) -> list[str] | None:
        return None

    def fallback_include_dirs(self, host: Host) -> list[str]:
        return []

    def toolchain(self, host: Host) -> str:
        return cxx_version()
