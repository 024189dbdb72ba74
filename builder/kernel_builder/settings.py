"""Every environment variable kernel-builder reads, read in one place, once per process.

Why one object: a setting read where it is used cannot be listed, documented or tested as a whole, and two
modules could read the same variable two ways. Each field below names its variable; README's "Environment
variables" table is the same list. Variables we only pass on untouched (the environment a compiler or a
container inherits) are not settings and are not read here.

`current()` reads the environment on first use and keeps the answer for the life of the process; a test
that changes the environment calls `reload()` (tests/conftest.py does so around every test).
"""

from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import EnvironmentProblem

PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")
CUTLASS_VAR = re.compile(r"KERNEL_BUILDER_CUTLASS_(\d+)_(\d+)")


@dataclass(frozen=True)
class Settings:
    # KERNEL_BUILDER_CACHE: where generated sources, objects, stamps, fetched headers and container logs
    # go; else $XDG_CACHE_HOME/kernel-builder, else ~/.cache/kernel-builder.
    cache_dir: Path
    # KERNEL_BUILDER_ENGINE: docker or podman (a name on PATH or a path) for `build --all` and `images`.
    engine: str | None = None
    # KERNEL_BUILDER_PROVENANCE: JSON set by `build --all` for the build inside a container, whose project
    # is a bare mount without its git history; users do not set it.
    provenance: dict | None = None
    # KERNEL_BUILDER_CANN_FLOW: asc | ascendc, the CANN build flow to prefer over the probe's choice.
    cann_flow: str | None = None
    # KERNEL_BUILDER_CUTLASS_<MAJOR>_<MINOR>: an include/ directory with those CUTLASS headers, used instead
    # of fetching the nvidia-cutlass wheel (air-gapped sites, a patched CUTLASS).
    cutlass_dirs: dict[tuple[int, int], Path] = field(default_factory=dict)
    # KERNEL_BUILDER_CUTLASS_URL: where to download the CUTLASS source tarball for a cutlass_X_Y that PyPI's
    # nvidia-cutlass does not carry (a mirror; `{tag}` in it becomes vX.Y.0), instead of CUTLASS's GitHub release.
    cutlass_url: str | None = None
    # KERNEL_BUILDER_CUTLASS_SHA256: the sha256 that tarball must have (else the pinned one, else unverified).
    cutlass_sha256: str | None = None
    # CXX: the C++ compiler cpp_extension uses (and our fingerprint records); default c++.
    cxx: str = "c++"
    # CUDA_HOME, else CUDA_PATH: the CUDA toolkit; else nvcc on PATH says where it is.
    cuda_home: str | None = None
    # TORCH_CUDA_ARCH_LIST: when set, torch's own variable wins over the archs build.toml asks for.
    torch_cuda_arch_list: str | None = None
    # ASCEND_HOME_PATH, else ASCEND_TOOLKIT_HOME (both set by CANN's set_env.sh): the CANN toolkit.
    ascend_home: str | None = None
    # KERNEL_BUILDER_ASCEND_SRC: a folder holding Huawei's open Ascend C sources (asc-devkit/, asc-tools/,
    # libboundscheck/) for `build --cann-twin` when no CANN toolkit is set; read there at build time, never copied.
    ascend_src: Path | None = None
    # HF_TOKEN: the write token for `upload` (else the one saved by `hf auth login`); never printed.
    hf_token: str | None = None
    # HF_ENDPOINT: the hub `upload` talks to when --endpoint is not given (default huggingface.co).
    hf_endpoint: str | None = None
    # SRC_HF_TOKEN: the read token for the source hub of `mirror` (HF_TOKEN is the destination's).
    src_hf_token: str | None = None
    # PIP_CERT, else REQUESTS_CA_BUNDLE, else SSL_CERT_FILE: the CA bundle mounted into build containers so
    # pip works behind a TLS-inspecting proxy; else the system bundle.
    ca_bundle: str | None = None
    # HTTP(S)_PROXY / NO_PROXY (either case): passed on into build containers.
    proxies: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_environ(cls, env: os._Environ | dict) -> Settings:
        def get(*names: str) -> str | None:
            return next((env[n] for n in names if env.get(n)), None)

        cache = get("KERNEL_BUILDER_CACHE")
        xdg = get("XDG_CACHE_HOME")
        provenance = get("KERNEL_BUILDER_PROVENANCE")
        cutlass = {(int(m.group(1)), int(m.group(2))): Path(v)
                   for k, v in env.items() if v and (m := CUTLASS_VAR.fullmatch(k))}
        return cls(
            cache_dir=Path(cache) if cache else Path(xdg or Path.home() / ".cache") / "kernel-builder",
            engine=get("KERNEL_BUILDER_ENGINE"),
            provenance=_json("KERNEL_BUILDER_PROVENANCE", provenance),
            cann_flow=(get("KERNEL_BUILDER_CANN_FLOW") or "").strip() or None,
            cutlass_dirs=cutlass,
            cutlass_url=(get("KERNEL_BUILDER_CUTLASS_URL") or "").strip() or None,
            cutlass_sha256=(get("KERNEL_BUILDER_CUTLASS_SHA256") or "").strip().lower() or None,
            cxx=get("CXX") or "c++",
            cuda_home=get("CUDA_HOME", "CUDA_PATH"),
            torch_cuda_arch_list=env.get("TORCH_CUDA_ARCH_LIST"),
            ascend_home=get("ASCEND_HOME_PATH", "ASCEND_TOOLKIT_HOME"),
            ascend_src=Path(v) if (v := get("KERNEL_BUILDER_ASCEND_SRC")) else None,
            hf_token=get("HF_TOKEN"),
            hf_endpoint=get("HF_ENDPOINT"),
            src_hf_token=get("SRC_HF_TOKEN"),
            ca_bundle=get("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"),
            proxies={k: env[k] for k in PROXY_VARS if env.get(k)},
        )


def _json(name: str, text: str | None) -> dict | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError as e:
        raise EnvironmentProblem(f"{name}: not JSON ({e})") from None
    if not isinstance(value, dict):
        raise EnvironmentProblem(f"{name}: must be a JSON object")
    return value


@functools.lru_cache(maxsize=1)
def current() -> Settings:
    return Settings.from_environ(os.environ)


def reload() -> Settings:
    """Forget what was read (tests that change the environment); the next `current()` reads it again."""
    current.cache_clear()
    return current()
