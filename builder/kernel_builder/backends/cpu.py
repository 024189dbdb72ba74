"""The CPU backend: g++ through cpp_extension, nothing but the kernel's own flags on top."""

from __future__ import annotations

from pathlib import Path

from ..build.host import Host
from ..project.model import HEADER_SUFFIXES, SOURCE_SUFFIXES
from ..variants import Variant
from .base import CppExtensionBackend


class CPU(CppExtensionBackend):
    family = "cpu"
    extension = "CppExtension"
    allowed_suffixes = (SOURCE_SUFFIXES - {".cu"}) | HEADER_SUFFIXES
    scaffold = ("{module}_cpu/{module}.cpp", "init/kernel_cpu.cpp.j2")

    def source_problem(self, rel: str) -> str | None:
        if Path(rel).suffix == ".cu":
            return "a CUDA source in a cpu kernel"
        return super().source_problem(rel)

    def can_load(self, variant: Variant, host: Host) -> bool:
        return variant.backend_type == self.family  # every torch runs CPU code

    def defines(self) -> list[str]:
        return ["-DCPU_KERNEL"]


BACKEND = CPU()
