"""Header dependencies named in `[kernel.*] depends` (cutlass_X_Y, ...), provided from pinned sources.

CUTLASS comes from the `nvidia-cutlass` wheel on PyPI at a pinned version (its
cutlass_library/source/include is the header tree), fetched once with pip into the cache. Versions PyPI
does not carry can be pointed at with KERNEL_BUILDER_CUTLASS_<X>_<Y>=<include dir>; otherwise the
build is refused before anything compiles, naming the dependency.

Two steps, so that planning never downloads: `resolve` (planning) decides where a dependency's headers
come from and where they will be, `fetch` (staging, only for a build that compiles) puts them there.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .. import settings
from . import cache
from ..errors import ConfigError, EnvironmentProblem
from ..tools import run

# depends entry -> nvidia-cutlass release on PyPI carrying that CUTLASS's headers.
PINNED_CUTLASS = {"cutlass_3_5": "3.5.1.0", "cutlass_3_6": "3.6.0.0", "cutlass_3_8": "3.8.0.0"}


def _cutlass_version(include_dir: Path) -> tuple[int, int] | None:
    try:
        text = (include_dir / "cutlass" / "version.h").read_text(errors="ignore")
    except OSError:
        return None
    maj = re.search(r"#define\s+CUTLASS_MAJOR\s+(\d+)", text)
    mnr = re.search(r"#define\s+CUTLASS_MINOR\s+(\d+)", text)
    return (int(maj.group(1)), int(mnr.group(1))) if maj and mnr else None


def _pinned_include(version: str) -> Path:
    return cache.base() / "deps" / f"nvidia-cutlass-{version}" / "include"


def _fetch_pinned(version: str) -> Path:
    include = _pinned_include(version)
    dest = include.parent
    if (include / "cutlass" / "version.h").is_file():
        return include
    with tempfile.TemporaryDirectory(dir=cache.root()) as tmp:
        r = run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", tmp,
                 f"nvidia-cutlass=={version}"], f"fetching nvidia-cutlass=={version}", timeout=1800)
        wheels = list(Path(tmp).glob("nvidia_cutlass-*.whl"))
        if r.returncode != 0 or not wheels:
            last = (r.stderr.strip().splitlines() or ["no output"])[-1]
            raise EnvironmentProblem(f"cannot fetch nvidia-cutlass=={version} with pip: {last}")
        staging = Path(tmp) / "include"
        prefix = "cutlass_library/source/include/"
        with zipfile.ZipFile(wheels[0]) as z:
            for name in z.namelist():
                if name.startswith(prefix) and not name.endswith("/"):
                    target = staging / name[len(prefix):]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(z.read(name))
        dest.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(include, ignore_errors=True)
        os.replace(staging, include)
    return include


@dataclass(frozen=True)
class Dependency:
    name: str  # the depends entry
    include: str | None  # the include directory it provides once fetched (None: nothing to add, e.g. torch)
    pinned: str | None = None  # the nvidia-cutlass release `fetch` downloads into `include` when missing

    @property
    def key(self) -> str:
        """What a fingerprint needs to know of it."""
        return f"{self.name}={self.pinned or self.include}"


def resolve(dep: str, build_file: Path, kernel: str, line: int | None = None) -> Dependency:
    """Where `dep`'s headers come from; raises ConfigError (exit 2) naming it when nowhere. Downloads
    nothing (an override directory's version is read, it must match)."""
    key = f"kernel.{kernel}.depends"
    if dep == "torch":
        return Dependency(dep, None)
    m = re.fullmatch(r"cutlass_(\d+)_(\d+)", dep)
    if not m:
        raise ConfigError(build_file, key, f"{dep} is only provided for {'xpu' if dep == 'sycl_tla' else 'metal'} "
                          "kernels, which this kernel-builder does not build", line)
    want = (int(m.group(1)), int(m.group(2)))
    env = f"KERNEL_BUILDER_CUTLASS_{want[0]}_{want[1]}"
    inc = settings.current().cutlass_dirs.get(want)
    if inc is not None:
        got = _cutlass_version(inc)
        if got != want:
            raise ConfigError(build_file, key, f"{dep}: {env}={inc} does not hold CUTLASS {want[0]}.{want[1]} "
                              f"headers (found {'.'.join(map(str, got)) if got else 'no include/cutlass/version.h'})", line)
        return Dependency(dep, str(inc))
    if dep in PINNED_CUTLASS:
        version = PINNED_CUTLASS[dep]
        return Dependency(dep, str(_pinned_include(version)), version)
    raise ConfigError(build_file, key, f"{dep}: no pinned source of CUTLASS {want[0]}.{want[1]} headers (PyPI's "
                      f"nvidia-cutlass has {', '.join(sorted(PINNED_CUTLASS))}); set {env} to a CUTLASS "
                      f"{want[0]}.{want[1]} include directory", line)


def fetch(dep: Dependency) -> None:
    """Make `dep.include` exist (download a pinned release once); a no-op for what is already there."""
    if dep.pinned:
        _fetch_pinned(dep.pinned)


def include_dirs(dep: str, build_file: Path, kernel: str, line: int | None = None) -> list[str]:
    """resolve + fetch: the include directories that satisfy `dep`."""
    d = resolve(dep, build_file, kernel, line)
    fetch(d)
    return [d.include] if d.include else []
