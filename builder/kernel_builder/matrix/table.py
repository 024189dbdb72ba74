"""The build matrix: matrix.toml (data) -> environments -> the variants a project gets from each.

Each [[env]] row is turned into the Host it would be inside its image, and the project is filtered with
the same `plan.select` the host build uses, so `build --all` and `build` can never disagree about what a
build.toml allows. A row's backend-specific fields (`cuda`, `cann`, ...) are read by its backend module.
Nothing here starts a container, imports torch or downloads anything.
"""

from __future__ import annotations

import fnmatch
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .. import backends
from ..errors import ConfigError, UsageError
from ..build.host import Host
from ..project.options import BuildOptions
from ..build.plan import select
from ..project.model import Project
from ..variants import Variant

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

MATRIX_FILE = Path(__file__).with_name("matrix.toml")
IMAGE_KEYS = {"python", "pip", "cuda-home", "base", "toolkit", "nvcc", "host-compiler"}
TOOLKITS = ("pip", "apt", "base")  # where an image's nvcc comes from (the Dockerfile's CUDA_TOOLKIT)
TOOLKIT_HOME = "/opt/cuda"  # an apt or base toolkit, as the Dockerfile links it
ENV_KEYS = {"torch", "backend", "image", "arch", "os"}  # every row; its backend's row_keys come on top
# Where the toolchain lives inside every image (the Dockerfile makes this path).
IMAGE_PYTHON = "/opt/venv/bin/python"


@dataclass(frozen=True)
class Image:
    name: str
    python: str
    pip: tuple[str, ...]
    base: str
    cuda_home: str | None = None  # relative to site-packages (a pip toolkit), else TOOLKIT_HOME
    toolkit: str | None = None  # pip | apt | base (CUDA images); None: no CUDA toolkit
    nvcc: str | None = None  # the toolkit's CUDA when it is not torch's ("12.4" for torch's 12.8)
    host_compiler: str | None = None  # g++-13: the C++ compiler an apt base installs for its nvcc


@dataclass(frozen=True)
class Env:
    index: int
    torch: str
    backend: str
    image: Image
    arch: str
    os: str
    fields: dict = field(default_factory=dict)  # the row's backend-specific keys as written ({"cuda": "13.0"})
    host_fields: dict = field(default_factory=dict)  # what its backend derived from them for the Host

    @property
    def label(self) -> str:
        """A short name for progress lines and logs: torch211-cu130, torch213-cpu, torch29-cann85-aarch64."""
        maj, mnr = self.torch.split(".")[:2]
        label = f"torch{maj}{mnr}-{backends.get(self.backend).variant(self.host()).backend}"
        return label if self.arch == "x86_64" else f"{label}-{self.arch}"

    def host(self) -> Host:
        """The Host this environment is inside its image (never probed: the image may not exist yet)."""
        base = dict(python=IMAGE_PYTHON, torch_version=self.torch, cxx11_abi=True, torch_cuda=None, nvcc=None,
                    nvcc_version=None, cuda_home=None, arch=self.arch, os=self.os, probed=False)
        return Host(**{**base, **self.host_fields})


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
    images = {name: _read_image(path, name, t, base_override or default_base)
              for name, t in (data.get("image") or {}).items()}
    envs = [_read_env(path, i, t, images) for i, t in enumerate(data.get("env") or [])]
    return Matrix(path, default_base, images, tuple(envs))


def _read_image(path: Path, name: str, t: dict, default_base: str) -> Image:
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
    base = t.get("base") or default_base  # an image's own base (CANN) is never overridden by --base-image
    return Image(name, t["python"], tuple(pip), base, *_read_toolkit(path, where, t))


def _read_toolkit(path: Path, where: str, t: dict) -> tuple:
    """(cuda_home, toolkit, nvcc, host_compiler) of an image table."""
    toolkit = t.get("toolkit", "pip" if t.get("cuda-home") else None)
    if toolkit is not None and toolkit not in TOOLKITS:
        raise ConfigError(path, f"{where}.toolkit", f"must be one of {', '.join(TOOLKITS)} (got {toolkit!r})")
    if toolkit == "pip" and not isinstance(t.get("cuda-home"), str):
        raise ConfigError(path, f"{where}.cuda-home", "a pip toolkit needs cuda-home (where under site-packages)")
    if toolkit in ("apt", "base") and "cuda-home" in t:
        raise ConfigError(path, f"{where}.cuda-home", f"only a pip toolkit has one (toolkit = {toolkit!r})")
    nvcc = t.get("nvcc")
    if nvcc is not None and (toolkit is None or not isinstance(nvcc, str) or not re.fullmatch(r"\d+\.\d+", nvcc)):
        raise ConfigError(path, f"{where}.nvcc", f"the toolkit's CUDA like \"12.4\", for a CUDA image (got {nvcc!r})")
    cxx = t.get("host-compiler")
    if cxx is not None and (toolkit != "apt" or not isinstance(cxx, str) or not re.fullmatch(r"g\+\+-\d+", cxx)):
        raise ConfigError(path, f"{where}.host-compiler", f"an apt toolkit's g++-N (got {cxx!r})")
    home = t.get("cuda-home") if toolkit == "pip" else (TOOLKIT_HOME if toolkit else None)
    return home, toolkit, nvcc, cxx


def _read_env(path: Path, i: int, t: dict, images: dict[str, Image]) -> Env:
    where = f"env[{i}]"
    for key in ("torch", "backend", "image", "arch", "os"):
        if not isinstance(t.get(key), str) or not t[key]:
            raise ConfigError(path, f"{where}.{key}", "missing (a string)")
    if not re.fullmatch(r"\d+\.\d+\.\d+", t["torch"]):
        raise ConfigError(path, f"{where}.torch", f"must be a full torch version like \"2.11.0\" (got {t['torch']!r})")
    if not backends.is_built(t["backend"]):
        raise ConfigError(path, f"{where}.backend", f"must be one of {', '.join(backends.families())} "
                          f"(got {t['backend']!r})")
    backend = backends.get(t["backend"])
    bad = set(t) - ENV_KEYS - set(backend.row_keys)
    if bad:
        key = sorted(bad)[0]
        owner = next((f for f in backends.families() if key in backends.get(f).row_keys), None)
        raise ConfigError(path, f"{where}.{key}", f"only {owner} rows name {key} (this row is {t['backend']})"
                          if owner else f"unknown key; known: {', '.join(sorted(ENV_KEYS | set(backend.row_keys)))}")
    image = images.get(t["image"])
    if image is None:
        raise ConfigError(path, f"{where}.image", f"no [image.{t['image']}] table (have: {', '.join(images)})")
    pinned = image.pip[0].split("==", 1)[1].split("+")[0].split(";")[0].strip()
    if pinned != t["torch"]:
        raise ConfigError(path, f"{where}.torch", f"{t['torch']} but image {image.name} installs torch {pinned}")

    def fail(key: str, problem: str, where=where):
        raise ConfigError(path, f"{where}.{key}", problem)

    host_fields = backend.read_row(fail, t, image)
    if image.nvcc and "nvcc_version" in host_fields:  # the image's compiler decides the capabilities
        host_fields["nvcc_version"] = image.nvcc
    row_fields = {k: t[k] for k in sorted(backend.row_keys) if k in t}
    if t["arch"] not in ("x86_64", "aarch64"):
        raise ConfigError(path, f"{where}.arch", f"must be x86_64 or aarch64 (got {t['arch']!r})")
    return Env(i, t["torch"], t["backend"], image, t["arch"], t["os"], row_fields, host_fields)


# --------------------------------------------------------------------------------------------------


@dataclass
class Entry:
    """One row of `list-variants --all`: an environment and what the project gets from it."""

    env: Env | None  # None for a pure-Python variant (built on the host, no container)
    family: str
    variant: Variant | None  # None: this environment builds nothing for the project (see reason)
    reason: str | None = None
    stable_abi: str | None = None  # "2.10" when this is a torch-stable-abi variant
    notes: list[str] = field(default_factory=list)
    elsewhere: str | None = None  # what this host lacks to build it (images.mark_elsewhere), else None

    @property
    def environment(self) -> str:
        return self.env.label if self.env else "host (pure Python)"


def expand(project: Project, matrix: Matrix, options: BuildOptions | None = None) -> list[Entry]:
    """Every environment x every backend of the project: the variant it builds, or why it builds none."""
    options = options or BuildOptions()
    if project.torch is None:  # pure Python: one host-independent variant per backend
        return [Entry(None, s.family, s.variant) for s in select(project, None, options)]
    entries: list[Entry] = []
    for env in matrix.envs:
        if env.backend not in project.general.backends:
            entries.append(Entry(env, env.backend, None, f"general.backends does not list {env.backend}"))
            continue
        sel = next(s for s in select(project, env.host(), options) if s.family == env.backend)
        entries.append(Entry(env, env.backend, sel.variant, sel.reason,
                             notes=[n for n in sel.notes if not n.startswith("torch.stable-abi")]))
    _apply_stable_abi(project, entries)
    seen: dict[Variant, Entry] = {}
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
                own = backends.get(family).variant(e.env.host())
                groups.setdefault((own.backend, own.arch, own.os), []).append(e)
        for (backend, arch, os_), rows in groups.items():
            maj, mnr = (int(x) for x in version.split(".")[:2])
            newest = max(rows, key=lambda e: tuple(int(x) for x in e.env.torch.split(".")))
            stable = Variant("stable", backend, (maj, mnr), None, arch, os_)
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
        hits = [e for e in buildable if matches(e.variant.name, [pat])]
        if not hits:
            unmatched.append(pat)
        chosen += [e for e in hits if e not in chosen]
    if unmatched:
        known = ", ".join(e.variant.name for e in buildable) or "none"
        raise UsageError(f"--variant {', '.join(unmatched)}: matches no variant of the matrix (variants: {known})")
    return chosen


def platform(arch: str) -> str | None:
    """The engine's --platform for an environment of another CPU arch (emulated: needs binfmt/qemu)."""
    from ..build.host import machine

    return None if arch == machine() else {"x86_64": "linux/amd64", "aarch64": "linux/arm64"}[arch]
