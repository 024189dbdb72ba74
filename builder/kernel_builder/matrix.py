"""The build matrix: matrix.toml (data) -> environments -> the variants a project gets from each.

Each [[env]] row is turned into the Host it would be inside its image, and the project is filtered with
the same `build.select` the host build uses, so `build --all` and `build` can never disagree about what a
build.toml allows. Nothing here starts a container or imports torch.
"""

from __future__ import annotations

import fnmatch
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .config import Project
from .errors import ConfigError, UsageError
from .host import Host
from .variants import Variant, backend_string

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

MATRIX_FILE = Path(__file__).with_name("matrix.toml")
IMAGE_KEYS = {"python", "pip", "cuda-home", "base"}
ENV_KEYS = {"torch", "backend", "cuda", "cann", "torch-npu", "image", "arch", "os"}
# Where the toolchain lives inside every image (the Dockerfile makes these paths).
IMAGE_PYTHON = "/opt/venv/bin/python"
IMAGE_CUDA_HOME = "/opt/cuda"


@dataclass(frozen=True)
class Image:
    name: str
    python: str
    pip: tuple[str, ...]
    base: str
    cuda_home: str | None = None  # relative to site-packages


@dataclass(frozen=True)
class Env:
    index: int
    torch: str
    backend: str
    image: Image
    arch: str
    os: str
    cuda: str | None = None
    cann: str | None = None  # "8.5.0": the toolkit of the image (cann rows)
    torch_npu: str | None = None

    @property
    def label(self) -> str:
        """A short name for progress lines and logs: torch211-cu130, torch213-cpu, torch29-cann85-aarch64."""
        maj, mnr = self.torch.split(".")[:2]
        version = self.cuda
        if self.cann:
            from .cann_versions import cann_mm

            version = "%d.%d" % cann_mm(self.cann)
        label = f"torch{maj}{mnr}-{backend_string(self.backend, version)}"
        return label if self.arch == "x86_64" else f"{label}-{self.arch}"

    def host(self) -> Host:
        """The Host this environment is inside its image (never probed: the image may not exist yet)."""
        return Host(python=IMAGE_PYTHON, torch_version=self.torch, cxx11_abi=True, torch_cuda=self.cuda,
                    nvcc=f"{IMAGE_CUDA_HOME}/bin/nvcc" if self.cuda else None, nvcc_version=self.cuda,
                    cuda_home=IMAGE_CUDA_HOME if self.cuda else None, arch=self.arch, os=self.os, probed=False,
                    cann_version=self.cann)


@dataclass(frozen=True)
class Matrix:
    file: Path
    default_base: str
    images: dict[str, Image]
    envs: tuple[Env, ...]


def load(path: Path | None = None, base_override: str | None = None) -> Matrix:
    """Read and validate a matrix file; every problem is one ConfigError naming the file and the key."""
    path = path or MATRIX_FILE
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(path, "", f"cannot read the build matrix: {e}") from None
    default_base = base_override or data.get("default-base")
    if not isinstance(default_base, str) or not default_base:
        raise ConfigError(path, "default-base", "must name a base image")
    unknown = set(data) - {"default-base", "image", "env"}
    if unknown:
        raise ConfigError(path, sorted(unknown)[0], "unknown key; known: default-base, image, env")
    images = {}
    for name, t in (data.get("image") or {}).items():
        where = f"image.{name}"
        bad = set(t) - IMAGE_KEYS
        if bad:
            raise ConfigError(path, f"{where}.{sorted(bad)[0]}", f"unknown key; known: {', '.join(sorted(IMAGE_KEYS))}")
        if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", name):
            raise ConfigError(path, where, "image names are lower-case letters, digits, '.', '_', '-'", )
        if not isinstance(t.get("python"), str) or not re.fullmatch(r"3\.\d+", t["python"]):
            raise ConfigError(path, f"{where}.python", f"must be a Python version like \"3.11\" (got {t.get('python')!r})")
        pip = t.get("pip")
        if not isinstance(pip, list) or not pip or not all(isinstance(p, str) and p for p in pip):
            raise ConfigError(path, f"{where}.pip", "must be a non-empty list of requirements, torch first")
        if not pip[0].startswith("torch=="):  # options such as --extra-index-url=... may follow
            raise ConfigError(path, f"{where}.pip", f"the first requirement must pin torch (got {pip[0]!r})")
        base = t.get("base") or base_override or default_base  # an image's own base (CANN) is never overridden
        images[name] = Image(name, t["python"], tuple(pip), base, t.get("cuda-home"))
    envs = []
    for i, t in enumerate(data.get("env") or []):
        where = f"env[{i}]"
        bad = set(t) - ENV_KEYS
        if bad:
            raise ConfigError(path, f"{where}.{sorted(bad)[0]}", f"unknown key; known: {', '.join(sorted(ENV_KEYS))}")
        for key in ("torch", "backend", "image", "arch", "os"):
            if not isinstance(t.get(key), str) or not t[key]:
                raise ConfigError(path, f"{where}.{key}", "missing (a string)")
        if not re.fullmatch(r"\d+\.\d+\.\d+", t["torch"]):
            raise ConfigError(path, f"{where}.torch", f"must be a full torch version like \"2.11.0\" (got {t['torch']!r})")
        if t["backend"] not in ("cpu", "cuda", "cann"):
            raise ConfigError(path, f"{where}.backend", f"must be cpu, cuda or cann (got {t['backend']!r})")
        image = images.get(t["image"])
        if image is None:
            raise ConfigError(path, f"{where}.image", f"no [image.{t['image']}] table (have: {', '.join(images)})")
        pinned = image.pip[0].split("==", 1)[1].split("+")[0].split(";")[0].strip()
        if pinned != t["torch"]:
            raise ConfigError(path, f"{where}.torch", f"{t['torch']} but image {image.name} installs torch {pinned}")
        cuda = t.get("cuda")
        if t["backend"] == "cuda":
            if not isinstance(cuda, str) or not re.fullmatch(r"\d+\.\d", cuda):
                raise ConfigError(path, f"{where}.cuda", f"a cuda row needs torch's CUDA like \"13.0\" (got {cuda!r})")
            if not image.cuda_home:
                raise ConfigError(path, f"{where}.image", f"image {image.name} has no cuda-home: it cannot build CUDA")
        elif cuda is not None:
            raise ConfigError(path, f"{where}.cuda", f"only cuda rows name a CUDA version (this row is {t['backend']})")
        cann, npu = t.get("cann"), t.get("torch-npu")
        if t["backend"] == "cann":
            from .cann_versions import CannVersionError, cann_mm

            if not isinstance(cann, str):
                raise ConfigError(path, f"{where}.cann", "a cann row names its toolkit's version, e.g. \"8.5.0\"")
            try:
                cann_mm(cann)
            except CannVersionError as e:
                raise ConfigError(path, f"{where}.cann", str(e)) from None
            if not isinstance(npu, str) or not any(p.startswith(f"torch-npu=={npu}") for p in image.pip):
                raise ConfigError(path, f"{where}.torch-npu", f"must name the torch-npu that image {image.name} "
                                  f"installs (got {npu!r})")
        elif cann is not None or npu is not None:
            raise ConfigError(path, f"{where}.{'cann' if cann is not None else 'torch-npu'}",
                              f"only cann rows name CANN / torch-npu (this row is {t['backend']})")
        if t["arch"] not in ("x86_64", "aarch64"):
            raise ConfigError(path, f"{where}.arch", f"must be x86_64 or aarch64 (got {t['arch']!r})")
        envs.append(Env(i, t["torch"], t["backend"], image, t["arch"], t["os"], cuda, cann, npu))
    return Matrix(path, default_base, images, tuple(envs))


# --------------------------------------------------------------------------------------------------


@dataclass
class Entry:
    """One row of `list-variants --all`: an environment and what the project gets from it."""

    env: Env | None  # None for a pure-Python variant (built on the host, no container)
    family: str
    variant: str | None
    reason: str | None = None
    stable_abi: str | None = None  # "2.10" when this is a torch-stable-abi variant
    notes: list[str] = field(default_factory=list)

    @property
    def environment(self) -> str:
        return self.env.label if self.env else "host (pure Python)"


def expand(project: Project, matrix: Matrix, options: dict | None = None) -> list[Entry]:
    """Every environment x every backend of the project: the variant it builds, or why it builds none."""
    from .build import select

    options = options or {}
    if project.torch is None:  # pure Python: one host-independent variant per backend
        return [Entry(None, f, "torch-" + ("npu" if f == "cann" else f)) for f in project.general.backends]
    entries: list[Entry] = []
    for env in matrix.envs:
        if env.backend not in project.general.backends:
            entries.append(Entry(env, env.backend, None, f"general.backends does not list {env.backend}"))
            continue
        sel = next(s for s in select(project, env.host(), options) if s.family == env.backend)
        entries.append(Entry(env, env.backend, sel.variant, sel.reason,
                             notes=[n for n in sel.notes if not n.startswith("torch.stable-abi")]))
    _apply_stable_abi(project, entries)
    seen: dict[str, Entry] = {}
    for e in entries:
        if e.variant and e.variant in seen:
            e.variant, e.reason = None, f"same variant as {seen[e.variant].environment}"
        elif e.variant:
            seen[e.variant] = e
    return entries


def _apply_stable_abi(project: Project, entries: list[Entry]) -> None:
    """For a backend in [torch.stable-abi]: one torch-stable-abi<XY> variant per backend version, built
    with the newest torch of the matrix, replaces the per-torch variants of that backend."""
    for family, version in project.torch.stable_abi.items():
        groups: dict[tuple, list[Entry]] = {}
        for e in entries:
            if e.family == family and e.variant:
                groups.setdefault((e.env.cuda, e.env.arch, e.env.os), []).append(e)
        for rows in groups.values():
            newest = max(rows, key=lambda e: tuple(int(x) for x in e.env.torch.split(".")))
            maj, mnr = (int(x) for x in version.split(".")[:2])
            stable = Variant("stable", backend_string(family, newest.env.cuda), (maj, mnr), None,
                             newest.env.arch, newest.env.os).name
            for e in rows:
                if e is newest:
                    e.variant, e.stable_abi = stable, version
                else:
                    e.variant, e.reason = None, f"covered by {stable} (torch.stable-abi.{family} = {version})"


def expand_braces(pattern: str) -> list[str]:
    """'torch21{1,4}-*' -> ['torch211-*', 'torch214-*'] (nested and repeated groups too)."""
    m = re.search(r"\{([^{}]*)\}", pattern)
    if not m:
        return [pattern]
    out = []
    for alt in m.group(1).split(","):
        out += expand_braces(pattern[:m.start()] + alt + pattern[m.end():])
    return out


def matches(name: str, patterns: list[str]) -> bool:
    """Shell-style patterns with braces, as `--variant` takes them."""
    return any(fnmatch.fnmatchcase(name, alt) for p in patterns for alt in expand_braces(p))


def pick(entries: list[Entry], patterns: list[str] | None) -> list[Entry]:
    """The buildable entries matching any pattern (all when none); a pattern matching nothing is an error."""
    buildable = [e for e in entries if e.variant]
    if not patterns:
        return buildable
    chosen, unmatched = [], []
    for pat in patterns:
        hits = [e for e in buildable if matches(e.variant, [pat])]
        if not hits:
            unmatched.append(pat)
        chosen += [e for e in hits if e not in chosen]
    if unmatched:
        known = ", ".join(e.variant for e in buildable) or "none"
        raise UsageError(f"--variant {', '.join(unmatched)}: matches no variant of the matrix (variants: {known})")
    return chosen


def platform(arch: str) -> str | None:
    """The engine's --platform for an environment of another CPU arch (emulated: needs binfmt/qemu)."""
    from .host import machine

    return None if arch == machine() else {"x86_64": "linux/amd64", "aarch64": "linux/arm64"}[arch]
