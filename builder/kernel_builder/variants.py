"""Build variant names (CONTRACT.md §2): build and parse them.

A variant name is the directory the loader looks for, so it is the one piece of data both sides must
spell identically; tests hold every name we generate against `kernels.variants.parse_variant`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    """How the loader spells one backend family in variant names (CONTRACT.md §2): data, not behaviour.

    `prefix` is the versioned backend string's prefix ("cu" in cu130), None for an unversioned family;
    `noarch` the name of its pure-Python variant (torch-<noarch>); `archs`: its compiled variants list the
    archs they were built for in metadata.json."""

    prefix: str | None
    noarch: str
    archs: bool = False
    minor_digits: int = 1  # the loader reads one minor digit for cu/cann/rocm; xpu's year.minor has more


# Every family the loader knows, whether or not kernel-builder builds it (backends/ builds some of them).
FAMILIES: dict[str, Family] = {
    "cpu": Family(None, "cpu"),
    "cuda": Family("cu", "cuda", archs=True),
    "cann": Family("cann", "npu", archs=True),
    "rocm": Family("rocm", "rocm", archs=True),
    "xpu": Family("xpu", "xpu", minor_digits=0),
    "metal": Family(None, "metal"),
    "neuron": Family(None, "neuron"),
    "tpu": Family(None, "tpu"),
}
UNIVERSAL = "universal"  # torch-universal: the noarch variant every backend may load
_BY_NOARCH = {f.noarch: name for name, f in FAMILIES.items()}
_BY_PREFIX = {f.prefix: name for name, f in FAMILIES.items() if f.prefix}


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
            return _BY_NOARCH.get(self.backend, self.backend)
        return backend_type(self.backend)

    @property
    def backend_version(self) -> tuple[int, int] | None:
        return backend_version(self.backend)


def backend_type(backend: str) -> str:
    m = re.fullmatch(r"([a-z]+?)(\d+)", backend)
    if m and m.group(1) in _BY_PREFIX:
        return _BY_PREFIX[m.group(1)]
    if backend in FAMILIES and FAMILIES[backend].prefix is None:
        return backend
    raise ValueError(f"unknown backend string {backend!r}")


def backend_version(backend: str) -> tuple[int, int] | None:
    """`cu130` -> (13, 0), `cann82` -> (8, 2): the loader reads the last digit as the minor version
    (xpu20252 -> (2025, 2): a four-digit year, then the minor)."""
    m = re.fullmatch(r"([a-z]+?)(\d+)", backend)
    family = _BY_PREFIX.get(m.group(1)) if m else None
    if family is None:
        return None
    digits = m.group(2)
    split = 4 if FAMILIES[family].minor_digits == 0 else len(digits) - 1
    if not 0 < split < len(digits):
        return None
    return int(digits[:split]), int(digits[split:])


def backend_string(family: str, version: str | tuple[int, int] | None = None) -> str:
    """("cuda", "13.0") -> "cu130"; ("cann", "8.2") -> "cann82"; ("cpu", None) -> "cpu"."""
    spelling = FAMILIES.get(family)
    if spelling is None:
        raise ValueError(f"unknown backend family {family!r}; known: {', '.join(FAMILIES)}")
    if spelling.prefix is None:
        return family
    if version is None:
        raise ValueError(f"backend {family} needs a version")
    if isinstance(version, str):
        parts = version.split(".")
        version = (int(parts[0]), int(parts[1]) if len(parts) > 1 else 0)
    maj, mnr = version
    if spelling.minor_digits == 1 and not 0 <= mnr <= 9:
        raise ValueError(f"{family} {maj}.{mnr}: the loader's variant names hold a one-digit minor version")
    return f"{spelling.prefix}{maj}{mnr}"


def major_minor(version: str) -> tuple[int, ...]:
    """"13.0" -> (13, 0), "2.11.0" -> (2, 11): how torch, CUDA and capability versions are compared."""
    return tuple(int(x) for x in version.split(".")[:2])


def noarch(family: str) -> Variant:
    """The pure-Python variant of a family: torch-cpu, torch-cuda, torch-npu (cann), ..."""
    return Variant("noarch", FAMILIES[family].noarch)


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
