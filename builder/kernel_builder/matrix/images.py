"""Toolchain images: one per [image.*] of the matrix, tagged by a hash of what goes into it, built on
demand from the top-level Dockerfile, listed and pruned (`kernel-builder images build|list|prune`).

Image builds use this host's pip configuration: local find-links directories and file:// indexes (this
machine's torch 2.13.0+cpu wheel, a site's wheelhouse) are served read-only on 127.0.0.1 for the length of
the build and handed to pip inside as http URLs, together with the host's CA bundle, as BuildKit secrets
(neither ends up in the image nor in its cache key).
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import socket
import sys
import tempfile
import threading
import urllib.parse
from contextlib import contextmanager
from pathlib import Path

from .. import settings
from ..build import cache
from ..errors import EnvironmentProblem
from .engine import Engine, host_ca_bundle
from .table import Image
from ..build.render import template_dir
from ..tools import run

LABEL = "org.kernel-builder.image"
INPUTS_LABEL = "org.kernel-builder.inputs"


def dockerfile() -> Path:
    return template_dir() / "Dockerfile"


def inputs(image: Image) -> dict:
    """Everything that decides an image's content (not where its wheels come from)."""
    return {"dockerfile": hashlib.sha256(dockerfile().read_bytes()).hexdigest(), "base": image.base,
            "python": image.python, "pip": list(image.pip), "cuda-home": image.cuda_home,
            **{k: v for k, v in (("toolkit", image.toolkit), ("nvcc", image.nvcc),
                                 ("host-compiler", image.host_compiler)) if v}}


def tag(image: Image) -> str:
    h = hashlib.sha256(json.dumps(inputs(image), sort_keys=True).encode()).hexdigest()[:12]
    return f"kernel-builder/{image.name}:{h}"


# --- the host's pip configuration, made reachable from inside a build -------------------------------


def host_pip_config() -> dict[str, list[str]]:
    """index-url / extra-index-url / find-links as this host's pip sees them (config files and PIP_*)."""
    r = run([sys.executable, "-m", "pip", "config", "list"], "reading this host's pip configuration", timeout=120)
    found: dict[str, list[str]] = {}
    for line in r.stdout.splitlines():
        key, _, value = line.partition("=")
        name = key.split(".")[-1]
        if name in ("index-url", "extra-index-url", "find-links"):
            values = value.strip().strip("'\"").split()
            found[name] = values  # later lines (environment) override earlier ones (files), as pip does
    return found


def _local_dir(url: str) -> Path | None:
    if url.startswith("file://"):
        p = Path(urllib.parse.unquote(urllib.parse.urlparse(url).path))
    elif "://" not in url:
        p = Path(url)
    else:
        return None
    return p if p.is_dir() else None


class _Handler(http.server.SimpleHTTPRequestHandler):
    roots: dict[str, Path] = {}

    def translate_path(self, path: str) -> str:
        parts = urllib.parse.unquote(urllib.parse.urlparse(path).path).lstrip("/").split("/", 1)
        root = self.roots.get(parts[0])
        if root is None:
            return "/nonexistent"
        target = (root / (parts[1] if len(parts) > 1 else "")).resolve()
        return str(target) if target == root or root in target.parents else "/nonexistent"

    def log_message(self, *args) -> None:
        pass


@contextmanager
def served_pip_config():
    """Yield the text of a pip.conf usable inside a `--network host` build, serving local paths."""
    config = host_pip_config()
    roots: dict[str, Path] = {}
    lines = ["[global]", "disable-pip-version-check = true", "timeout = 180"]
    mapped: dict[str, list[str]] = {}
    for key, values in config.items():
        for url in values:
            d = _local_dir(url)
            if d is None:
                mapped.setdefault(key, []).append(url)
                continue
            # an index's pages link to files beside it ("../../files/x.whl"): serve the parent
            root = d.resolve() if key == "find-links" else d.resolve().parent
            prefix = f"d{len(roots)}"
            roots[prefix] = root
            rel = "" if key == "find-links" else d.resolve().name + "/"
            mapped.setdefault(key, []).append(f"http://127.0.0.1:{{port}}/{prefix}/{rel}")
    server = None
    if roots:
        handler = type("Handler", (_Handler,), {"roots": roots})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1] if server else 0
    for key, urls in mapped.items():
        lines.append(f"{key} = " + " ".join(u.replace("{port}", str(port)) for u in urls))
    try:
        yield "\n".join(lines) + "\n"
    finally:
        if server:
            server.shutdown()
            server.server_close()


# --- build / list / prune ----------------------------------------------------------------------------

_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock_for(ref: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(ref, threading.Lock())


def ensure(engine: Engine, image: Image, log: Path, rebuild: bool = False,
           platform: str | None = None) -> tuple[str, bool]:
    """(tag, built now). Several variants of one image wait for one build (threads share the lock)."""
    ref = tag(image)
    # threads of this process share one lock per tag; other kernel-builder processes (CI jobs on one
    # daemon, whatever their cache) wait on a file lock. Without it BuildKit merges two identical RUN steps whose secrets differ
    # (a pip.conf naming another process's short-lived wheel server) and both builds fail.
    with _lock_for(ref), cache.locked(Path(tempfile.gettempdir()) / "kernel-builder-image-locks" / ref.replace("/", "_").replace(":", "_")):
        if not rebuild and engine.image_exists(ref):
            return ref, False
        engine.ensure_base(image.base)
        with tempfile.TemporaryDirectory(prefix="kb-image-") as tmp, served_pip_config() as pip_conf:
            ctx = Path(tmp)
            (ctx / "Dockerfile").write_bytes(dockerfile().read_bytes())
            (ctx / "pip.conf").write_text(pip_conf)
            secrets = {"pip.conf": ctx / "pip.conf"}
            ca = host_ca_bundle()
            if ca:
                secrets["ca.crt"] = ca
            build_args = {"BASE_IMAGE": image.base, "PYTHON": image.python, "PIP_PACKAGES": " ".join(image.pip),
                          "CUDA_WHEEL_HOME": (image.cuda_home if image.toolkit == "pip" else None) or "",
                          "CUDA_TOOLKIT": image.toolkit or "", "HOST_COMPILER": image.host_compiler or ""}
            labels = {LABEL: image.name, INPUTS_LABEL: json.dumps(inputs(image), sort_keys=True)}
            engine.build(ctx, ref, build_args, secrets, labels, log, platform)
        return ref, True


def log_dir() -> Path:
    d = cache.root() / "logs" / "images"
    d.mkdir(parents=True, exist_ok=True)
    return d


def listing(engine: Engine, matrix) -> list[dict]:
    """Every kernel-builder image the engine holds, marked current (its tag matches the matrix) or stale."""
    current = {tag(i): name for name, i in matrix.images.items()}
    rows = []
    for row in engine.images(LABEL):
        row["image"] = current.get(row["ref"]) or (row["ref"].split("/")[-1].split(":")[0])
        row["state"] = "current" if row["ref"] in current else "stale"
        rows.append(row)
    return rows



# --- can this host build an image? -------------------------------------------------------------------

LOCAL_PREFIX = "local/"  # base images made on this host (scripts/make_base_image.sh), never pulled
# where `docker pull` of a registry's short name really connects
REGISTRY_HOSTS = {"docker.io": "registry-1.docker.io"}
REGISTRY_NAMES = {"docker.io": "Docker Hub", "nvcr.io": "NVIDIA's NGC registry",
                  "download.pytorch.org": "PyTorch's package index"}


def registry(ref: str) -> str:
    """The registry an image reference is pulled from: 'nvcr.io/nvidia/cuda:12.6' -> 'nvcr.io',
    'pytorch/manylinux:x' and 'ubuntu' -> 'docker.io'."""
    first, _, rest = ref.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def needs(image: Image) -> list[tuple[str, str]]:
    """(host:port to reach, what it is) for every server an image build pulls from besides PyPI and the
    base's own Debian archive: the base image's registry, and the package indexes its pip list names."""
    out = []
    if not image.base.startswith(LOCAL_PREFIX):
        reg = registry(image.base)
        host = REGISTRY_HOSTS.get(reg, reg)
        name = f"{REGISTRY_NAMES[reg]}, " if reg in REGISTRY_NAMES else ""
        out.append((host if ":" in host else f"{host}:443", f"registry {reg} ({name}base image {image.base}"))
    for opt in image.pip:
        key, _, url = opt.partition("=")
        if key in ("--index-url", "--extra-index-url", "-i") and url:
            u = urllib.parse.urlparse(url)
            port = u.port or (443 if u.scheme == "https" else 80)
            name = REGISTRY_NAMES.get(u.hostname or "", "package index")
            out.append((f"{u.hostname}:{port}", f"{name} {url}"))
    return out


@functools.lru_cache(maxsize=None)
def reachable(hostport: str, timeout: float = 3.0) -> bool:
    """A TCP connection to host:port opens (the name resolves, something listens). Nothing is sent."""
    host, _, port = hostport.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
        return True
    except (OSError, ValueError):
        return False


def missing(image: Image, engine: Engine | None) -> str | None:
    """Why this host cannot build `image` (one line naming the missing registry, index or local base),
    or None. An image already built is never missing anything; with a proxy configured the servers
    are assumed reachable (docker and pip go through it, a direct connection says nothing)."""
    if engine is not None and engine.image_exists(tag(image)):
        return None
    lacking = []
    if image.base.startswith(LOCAL_PREFIX):
        if engine is not None and not engine.image_exists(image.base):
            repo, _, suite = image.base.partition(":")
            make = (f"bash scripts/make_base_image.sh {suite} {image.base}" if repo == "local/debian" and suite
                    else "scripts/make_base_image.sh makes Debian ones")
            lacking.append(f"base image {image.base} (not made yet: {make})")
    base_here = engine is not None and not image.base.startswith(LOCAL_PREFIX) and engine.image_exists(image.base)
    direct = not settings.current().proxies
    for hostport, what in needs(image):
        if what.startswith("registry "):
            if not base_here and direct and not reachable(hostport):
                lacking.append(f"{what}: not reachable from here; `docker save` it where it is, `docker load` it here)")
        elif direct and not reachable(hostport):
            lacking.append(f"{what} (not reachable from here)")
    return f"needs {'; '.join(lacking)}" if lacking else None


def mark_elsewhere(entries, engine: Engine | None) -> None:
    """Set `elsewhere` on every entry whose image this host cannot build (one probe per image)."""
    seen: dict[str, str | None] = {}
    for e in entries:
        if e.env is not None and e.variant is not None:
            name = e.env.image.name
            if name not in seen:
                try:
                    seen[name] = missing(e.env.image, engine)
                except EnvironmentProblem:  # no daemon: judge by the network alone
                    seen[name] = missing(e.env.image, None)
            e.elsewhere = seen[name]
