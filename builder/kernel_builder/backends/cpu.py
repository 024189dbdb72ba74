"""The CPU backend: g++ through cpp_extension, nothing but the kernel's own flags on top."""

from __future__ import annotations

import functools
import subprocess

from ..config import Kernel, Project
from ..host import Host
from ..variants import Variant


@functools.lru_cache(maxsize=None)
def cxx_version() -> str:
    try:
        out = subprocess.run(["c++", "--version"], capture_output=True, text=True, timeout=30).stdout
        return out.splitlines()[0] if out else "c++ unknown"
    except OSError:
        return "c++ not found"


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
