"""Build variant names (CONTRACT.md §2): build, parse and order them.

A variant name is the directory the loader looks for, so it is the one piece of data both sides must
spell identically; tests hold every name we generate against `kernels.variants.parse_variant`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_VERSIONED = {"cu": "cuda", "cann": "cann", "rocm": "rocm", "xpu": "xpu"}
NOARCH_BACKENDS = ("cpu", "cuda", "npu", "rocm", "xpu", "metal", "neuron", "universal")


@dataclass(frozen=True)
class Variant:
    """One build variant. `kind` is "torch" (compiled), "stable" (torch stable ABI) or "noarch"."""

    kind: str
    backend: str  # "cpu", "cu130", "cann82", "rocm64", "xpu20252", "metal"; noarch: "cpu", "cuda", "npu", ...
    torch: tuple[int, int] | None = None  # torch (or stable ABI) major.minor; None for noarch
    cxx11: bool | None = None  # None: no ABI tag (macOS, Windows, stable ABI)
    arch: str | None = None
    os: str | None = None

    @property
    def name(self) -> str:
        if self.kind == "noarch":
            return f"torch-{self.backend}"
        maj, mnr = self.torch
        if self.kind == "stable":
            return f"torch-stable-abi{maj}{mnr}-{self.backend}-{self.arch}-{self.os}"
        abi = "" if self.cxx11 is None else ("-cxx11" if self.cxx11 else "-cxx98")
        return f"torch{maj}{mnr}{abi}-{self.backend}-{self.arch}-{self.os}"

    def __str__(self) -> str:
        return self.name

    @property
    def backend_type(self) -> str:
        """The backend family: cpu, cuda, cann, rocm, xpu, metal (noarch: npu means cann)."""
        if self.kind == "noarch":
            return "cann" if self.backend == "npu" else self.backend
        return backend_type(self.backend)

    @property
    def backend_version(self) -> tuple[int, int] | None:
        return backend_version(self.backend)

    def sort_key(self) -> tuple:
        """The loader's preference order: stable ABI (newest first) > tagless > cxx11 > noarch > universal;
        within a kind, the newest backend version first."""
        bv = self.backend_version or (0, 0)
        if self.kind == "stable":
            return (0, -self.torch[0], -self.torch[1], 0, -bv[0], -bv[1], self.name)
        if self.kind == "torch":
            return (1, 0, 0, 0 if self.cxx11 is None else 1, -bv[0], -bv[1], self.name)
        return (2, 0, 0, 1 if self.backend == "universal" else 0, 0, 0, self.name)


def backend_type(backend: str) -> str:
    for prefix, family in sorted(_VERSIONED.items(), key=lambda kv: -len(kv[0])):
        if re.fullmatch(rf"{prefix}\d+", backend):
            return family
    if backend in ("cpu", "metal", "neuron", "tpu"):
        return backend
    raise ValueError(f"unknown backend string {backend!r}")


def backend_version(backend: str) -> tuple[int, int] | None:
    """`cu130` -> (13, 0), `cann82` -> (8, 2): the loader reads the last digit as the minor version."""
    m = re.fullmatch(r"(?:cu|cann|rocm)(\d+)(\d)", backend)
    if m:
        return int(m.group(1)), int(m.group(2))
    m = re.fullmatch(r"xpu(\d{4})(\d+)", backend)
    if m:
        return int(m.group(1)), int(m.group(2))
    return None


def backend_string(family: str, version: str | tuple[int, int] | None = None) -> str:
    """("cuda", "13.0") -> "cu130"; ("cann", "8.2") -> "cann82"; ("cpu", None) -> "cpu"."""
    if family in ("cpu", "metal", "neuron", "tpu"):
        return family
    if version is None:
        raise ValueError(f"backend {family} needs a version")
    if isinstance(version, str):
        parts = version.split(".")
        version = (int(parts[0]), int(parts[1]) if len(parts) > 1 else 0)
    maj, mnr = version
    if family in ("cuda", "cann", "rocm") and not 0 <= mnr <= 9:
        raise ValueError(f"{family} {maj}.{mnr}: the loader's variant names hold a one-digit minor version")
    prefix = {"cuda": "cu", "cann": "cann", "rocm": "rocm", "xpu": "xpu"}[family]
    return f"{prefix}{maj}{mnr}"


def parse(name: str) -> Variant:
    """Parse a variant directory name; raises ValueError for anything the loader would not accept."""
    m = re.fullmatch(r"torch-stable-abi(\d)(\d+)-([a-z0-9]+)-([A-Za-z0-9_]+)-([a-z]+)", name)
    if m:
        backend_type(m.group(3))
        return Variant("stable", m.group(3), (int(m.group(1)), int(m.group(2))), None, m.group(4), m.group(5))
    m = re.fullmatch(r"torch-([a-z0-9]+)", name)
    if m:
        return Variant("noarch", m.group(1))
    m = re.fullmatch(r"torch(\d)(\d+)(?:-(cxx11|cxx98))?-([a-z0-9]+)-([A-Za-z0-9_]+)-([a-z]+)", name)
    if m:
        backend_type(m.group(4))
        cxx11 = None if m.group(3) is None else m.group(3) == "cxx11"
        return Variant("torch", m.group(4), (int(m.group(1)), int(m.group(2))), cxx11, m.group(5), m.group(6))
    raise ValueError(f"not a build variant name: {name!r}")


def ordered(variants) -> list[Variant]:
    return sorted(variants, key=Variant.sort_key)
