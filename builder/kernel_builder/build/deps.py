"""Header dependencies named in `[kernel.*] depends` (cutlass_X_Y, ...), provided from pinned sources.

CUTLASS X.Y comes from, in order: KERNEL_BUILDER_CUTLASS_<X>_<Y>=<include dir> (air-gapped sites, a
patched CUTLASS); the `nvidia-cutlass` wheel on PyPI when a release of exactly that X.Y carries the C++
headers (PINNED_CUTLASS; its cutlass_library/source/include is the header tree), fetched once with pip;
else CUTLASS's source release of tag vX.Y.0 (KERNEL_BUILDER_CUTLASS_URL overrides the address), downloaded
once into the cache, checked against a sha256 (CUTLASS_SHA256, or KERNEL_BUILDER_CUTLASS_SHA256; without
either the download is used with a one-line warning that its digest is unverified) and extracted safely:
only its include/ tree, as plain files, refused whole on any path or link that leaves it.

Two steps, so that planning never downloads: `resolve` (planning) decides where a dependency's headers
come from and where they will be, `fetch` (staging, only for a build that compiles) puts them there.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import shutil
import ssl
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .. import settings
from . import cache
from ..errors import ConfigError, EnvironmentProblem
from ..tools import run

# depends entry -> nvidia-cutlass release on PyPI carrying that CUTLASS's full C++ headers.
PINNED_CUTLASS = {"cutlass_3_5": "3.5.1.0", "cutlass_3_6": "3.6.0.0", "cutlass_3_7": "3.7.0.0",
                  "cutlass_3_8": "3.8.0.0", "cutlass_4_2": "4.2.0.0"}
# CUTLASS's source releases, for versions PyPI does not carry; {tag} is vX.Y.0.
CUTLASS_SOURCE_URL = "https://github.com/NVIDIA/cutlass/archive/refs/tags/{tag}.tar.gz"
# tag -> sha256 of CUTLASS_SOURCE_URL's tarball, where known. Empty: none was checked from here (the
# source host is not reachable from where this was written), so such a download is marked unverified.
CUTLASS_SHA256: dict[str, str] = {}
DOWNLOAD_TIMEOUT = 60.0  # seconds without a byte, and ...
DOWNLOAD_DEADLINE = 1800.0  # ... seconds in all
MAX_DOWNLOAD = 512 << 20  # bytes of tarball
MAX_MEMBERS = 200_000  # entries in the tarball
MAX_INCLUDE = 1 << 30  # bytes extracted (the include/ tree only)


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
            x, y = version.split(".")[:2]
            raise EnvironmentProblem(f"cannot fetch nvidia-cutlass=={version} (CUTLASS {x}.{y}) with pip: {last}; "
                                     f"or set KERNEL_BUILDER_CUTLASS_{x}_{y} to a CUTLASS {x}.{y} include directory")
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


# --------------------------------------------------------------------------------------------------
# CUTLASS source releases: download once, verify, extract include/ safely
# --------------------------------------------------------------------------------------------------


def _source_include(want: tuple[int, int], url: str, sha256: str | None) -> Path:
    """Where a source release's include/ goes: one folder per (version, address, digest)."""
    tag = hashlib.sha256(f"{url}\n{sha256 or ''}".encode()).hexdigest()[:12]
    return cache.base() / "deps" / f"cutlass-{want[0]}.{want[1]}.0-{tag}" / "include"


def _download(url: str, into: Path, what: str) -> str:
    """Stream `url` into the file `into`; its sha256. Any failure is one EnvironmentProblem line (`what`: why)."""
    digest, size, deadline = hashlib.sha256(), 0, time.monotonic() + DOWNLOAD_DEADLINE
    ca = settings.current().ca_bundle
    try:
        context = ssl.create_default_context(cafile=ca) if ca and url.startswith("https:") else None
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT, context=context) as r, open(into, "wb") as f:
            while chunk := r.read(1 << 20):
                size += len(chunk)
                if size > MAX_DOWNLOAD:
                    raise EnvironmentProblem(f"{what}: larger than {MAX_DOWNLOAD >> 20} MiB")
                if time.monotonic() > deadline:
                    raise EnvironmentProblem(f"{what}: did not finish within {DOWNLOAD_DEADLINE:.0f} s")
                digest.update(chunk)
                f.write(chunk)
    except urllib.error.HTTPError as e:
        raise EnvironmentProblem(f"{what}: HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise EnvironmentProblem(f"{what}: {e.reason}") from None
    except (OSError, ValueError) as e:  # timeouts, resets, a malformed address
        raise EnvironmentProblem(f"{what}: {e}") from None
    return digest.hexdigest()


def _member_path(m: tarfile.TarInfo) -> str:
    """The member's name, refused when it is absolute, climbs out with .., or is not a file, folder or link."""
    name = m.name.replace("\\", "/")
    if name.startswith("/") or re.match(r"[A-Za-z]:", name) or ".." in name.split("/"):
        raise ValueError(f"unsafe path {m.name!r}")
    if not (m.isfile() or m.isdir() or m.issym() or m.islnk()):
        raise ValueError(f"{m.name!r} is not a file, folder or link")
    if m.issym() or m.islnk():
        target = m.linkname.replace("\\", "/")
        base = posixpath.dirname(name) if m.issym() else ""
        joined = posixpath.normpath(posixpath.join(base, target))
        if target.startswith("/") or joined == ".." or joined.startswith("../"):
            raise ValueError(f"link {m.name!r} -> {m.linkname!r} leaves the archive")
    return posixpath.normpath(name)


def _include_root(names: list[str]) -> str:
    """The archive's folder holding include/cutlass/version.h: its top folder (`x/include/...`) or its root."""
    suffix = "include/cutlass/version.h"
    roots = {n[: -len(suffix)] for n in names if n == suffix or (n.endswith("/" + suffix) and n.count("/") == 3)}
    if len(roots) != 1:
        raise ValueError("no single include/cutlass/version.h at the archive's top")
    return roots.pop() + "include/"


def _extract_include(archive: Path, staging: Path) -> None:
    """Write the archive's include/ tree under `staging` as plain files; raise ValueError, writing nothing
    anywhere else, on anything unsafe (a path or link leaving the archive, a link inside include/, limits)."""
    with tarfile.open(archive, "r:*") as tar:
        members = []
        for m in tar:
            members.append((_member_path(m), m))
            if len(members) > MAX_MEMBERS:
                raise ValueError(f"more than {MAX_MEMBERS} entries")
        root = _include_root([n for n, m in members if m.isfile()])
        total = 0
        for name, m in members:
            if not name.startswith(root) or m.isdir():
                continue
            if not m.isfile():
                raise ValueError(f"{m.name!r}: a link inside include/")
            total += m.size
            if total > MAX_INCLUDE:
                raise ValueError(f"include/ is larger than {MAX_INCLUDE >> 20} MiB")
            target = staging / name[len(root):]
            if not target.resolve().is_relative_to(staging.resolve()):
                raise ValueError(f"unsafe path {m.name!r}")
            target.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(m) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)


def _fetch_source(dep: Dependency) -> Path:
    """Download dep.url once into the cache, check its digest, extract its include/ there."""
    include, want = Path(dep.include), _wanted(dep.name)
    what = f"{dep.name}: fetching CUTLASS {want[0]}.{want[1]} from {dep.url}"
    hint = (f"; set KERNEL_BUILDER_CUTLASS_{want[0]}_{want[1]} (an include directory), or KERNEL_BUILDER_CUTLASS_URL "
            f"and KERNEL_BUILDER_CUTLASS_SHA256 (a reachable copy of the v{want[0]}.{want[1]}.0 source tarball)")
    if _cutlass_version(include) == want:
        return include
    with cache.locked(include.parent):
        if _cutlass_version(include) == want:  # another build fetched it while we waited
            return include
        with tempfile.TemporaryDirectory(dir=include.parent, prefix=".fetch-") as tmp:
            archive, staging = Path(tmp) / "source.tar.gz", Path(tmp) / "include"
            try:
                got = _download(dep.url, archive, what)
            except EnvironmentProblem as e:
                raise EnvironmentProblem(" ".join(f"{e}".split()) + hint) from None
            if dep.sha256 and got != dep.sha256:
                raise EnvironmentProblem(f"{what}: sha256 is {got}, expected {dep.sha256}{hint}")
            try:
                _extract_include(archive, staging)
            except (ValueError, OSError, tarfile.TarError) as e:
                raise EnvironmentProblem(f"{what}: archive refused: {e}{hint}") from None
            found = _cutlass_version(staging)
            if found != want:
                have = ".".join(map(str, found)) if found else "no version"
                raise EnvironmentProblem(f"{what}: it holds CUTLASS {have}, not {want[0]}.{want[1]}{hint}")
            shutil.rmtree(include, ignore_errors=True)
            os.replace(staging, include)
    if not dep.sha256:
        print(f"kernel-builder: warning: {dep.name}: {dep.url} used unverified (sha256 {got}; no known digest, "
              "KERNEL_BUILDER_CUTLASS_SHA256 sets one)", file=sys.stderr, flush=True)
    return include


@dataclass(frozen=True)
class Dependency:
    name: str  # the depends entry
    include: str | None  # the include directory it provides once fetched (None: nothing to add, e.g. torch)
    pinned: str | None = None  # the nvidia-cutlass release `fetch` downloads into `include` when missing
    url: str | None = None  # else the source release `fetch` downloads and extracts into `include`
    sha256: str | None = None  # the digest that download must have (None: unknown, used unverified)

    @property
    def key(self) -> str:
        """What a fingerprint needs to know of it."""
        source = self.url and f"{self.url}#sha256={self.sha256 or 'unverified'}"
        return f"{self.name}={self.pinned or source or self.include}"


def _wanted(dep: str) -> tuple[int, int]:
    m = re.fullmatch(r"cutlass_(\d+)_(\d+)", dep)
    return (int(m.group(1)), int(m.group(2)))


def _source(dep: str, want: tuple[int, int]) -> Dependency:
    """The source release of tag vX.Y.0 (or KERNEL_BUILDER_CUTLASS_URL, where `{tag}` becomes vX.Y.0) and
    the digest it must have (KERNEL_BUILDER_CUTLASS_SHA256, else CUTLASS_SHA256's for the default address)."""
    s, tag = settings.current(), f"v{want[0]}.{want[1]}.0"
    url = (s.cutlass_url or CUTLASS_SOURCE_URL).replace("{tag}", tag)
    sha = s.cutlass_sha256 or (None if s.cutlass_url else CUTLASS_SHA256.get(tag))
    if sha is not None and not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise EnvironmentProblem(f"KERNEL_BUILDER_CUTLASS_SHA256={sha}: not a sha256 (64 hexadecimal digits)")
    return Dependency(dep, str(_source_include(want, url, sha)), url=url, sha256=sha)


def resolve(dep: str, build_file: Path, kernel: str, line: int | None = None) -> Dependency:
    """Where `dep`'s headers come from; raises ConfigError (exit 2) naming it when nowhere. Downloads
    nothing (an override directory's version is read, it must match)."""
    key = f"kernel.{kernel}.depends"
    if dep == "torch":
        return Dependency(dep, None)
    if not re.fullmatch(r"cutlass_(\d+)_(\d+)", dep):
        raise ConfigError(build_file, key, f"{dep} is only provided for {'xpu' if dep == 'sycl_tla' else 'metal'} "
                          "kernels, which this kernel-builder does not build", line)
    want = _wanted(dep)
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
    return _source(dep, want)


def fetch(dep: Dependency) -> None:
    """Make `dep.include` exist (download a pinned wheel or a source release once); a no-op for what is
    already there."""
    if dep.pinned:
        _fetch_pinned(dep.pinned)
    elif dep.url:
        _fetch_source(dep)


def include_dirs(dep: str, build_file: Path, kernel: str, line: int | None = None) -> list[str]:
    """resolve + fetch: the include directories that satisfy `dep`."""
    d = resolve(dep, build_file, kernel, line)
    fetch(d)
    return [d.include] if d.include else []
