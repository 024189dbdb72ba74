"""What this machine can build for: torch version and ABI, torch's CUDA, nvcc, CPU arch, OS.

Importing torch costs ~1.5 s, more than a whole no-op rebuild may take, so the probe runs once in a
child process and its answer is cached, keyed by the torch installation (version.py's path, size and
mtime) and the nvcc found; a changed torch or toolkit invalidates it.
"""

from __future__ import annotations

import functools
import json
import platform
import re
import shutil
import sys
from dataclasses import asdict, dataclass
from importlib.util import find_spec
from pathlib import Path

from .. import settings
from . import cache
from ..errors import EnvironmentProblem
from ..tools import probe, run

_PROBE = r"""
import json, torch
print(json.dumps({"torch": torch.__version__, "cxx11": bool(torch.compiled_with_cxx11_abi()),
                  "cuda": torch.version.cuda, "glibcxx_abi": int(torch._C._GLIBCXX_USE_CXX11_ABI)}))
"""


@dataclass(frozen=True)
class Host:
    python: str
    torch_version: str  # full, e.g. "2.13.0+cpu"
    cxx11_abi: bool
    torch_cuda: str | None  # "13.0" when torch is a CUDA build
    nvcc: str | None  # path of the real nvcc
    nvcc_version: str | None
    cuda_home: str | None
    arch: str
    os: str
    probed: bool = True  # False: described by the build matrix, not this machine (no nvcc to ask)
    cann_version: str | None = None  # a matrix row's CANN ("8.5.0"); a probed host reads its toolkit instead

    @property
    def torch_mm(self) -> tuple[int, int]:
        maj, mnr = self.torch_version.split("+")[0].split(".")[:2]
        return int(maj), int(mnr)


def cxx_standard(torch_mm: tuple[int, int]) -> int:
    """C++17 up to torch 2.11, C++20 from 2.12: torch >= 2.12's headers refuse anything older, and it is what
    both cpp_extension and torch's CMake package (Hugging Face's builder) pick for that torch."""
    return 20 if torch_mm >= (2, 12) else 17


@functools.lru_cache(maxsize=None)
def cxx_version() -> str:
    """The C++ compiler cpp_extension will use ($CXX, else c++) and its version: a fingerprint input."""
    cxx = settings.current().cxx
    r = probe([cxx, "--version"], timeout=30)
    if r is None:
        return f"{cxx}: not found"
    return f"{cxx}: {r.stdout.splitlines()[0]}" if r.stdout else f"{cxx}: unknown"


def machine() -> str:
    """This CPU as variant names spell it (x86_64, aarch64)."""
    m = platform.machine()
    return {"AMD64": "x86_64", "arm64": "aarch64"}.get(m, m)


def find_cuda() -> tuple[str | None, str | None, str | None]:
    """(nvcc, version, CUDA_HOME). A `nvcc` on PATH may be a wrapper script (it is here); torch's own
    guess of CUDA_HOME from it would be wrong, so find the toolkit the wrapper execs."""
    home = settings.current().cuda_home
    nvcc = str(Path(home) / "bin" / "nvcc") if home else shutil.which("nvcc")
    if not nvcc or not Path(nvcc).exists():
        return None, None, None
    real = Path(nvcc).resolve()
    if not (real.parent.parent / "include" / "cuda_runtime.h").exists():
        try:
            text = real.read_text(errors="ignore") if real.stat().st_size < 65536 else ""
        except OSError:
            text = ""
        m = re.search(r"(/\S+)/bin/nvcc\b", text)
        if m and Path(m.group(0)).exists():
            real = Path(m.group(0)).resolve()
    r = probe([str(real), "--version"])
    m = re.search(r"release (\d+\.\d+), V(\d+\.\d+\.\d+)", r.stdout) if r else None
    if not m:
        return None, None, None
    return str(real), m.group(2), home or str(real.parent.parent)


def _torch_fingerprint() -> str:
    spec = find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        raise EnvironmentProblem(f"torch is not installed for {sys.executable}: pip install torch")
    vfile = Path(list(spec.submodule_search_locations)[0]) / "version.py"
    st = vfile.stat()
    return f"{vfile}:{st.st_size}:{st.st_mtime_ns}"


def detect() -> Host:
    key = json.dumps([sys.executable, _torch_fingerprint(), settings.current().cuda_home, shutil.which("nvcc")])
    path = cache.root() / "host.json"
    try:
        saved = json.loads(path.read_text())
        if saved.get("key") == key:
            return Host(**saved["host"])
    except (OSError, ValueError, TypeError):
        pass
    r = run([sys.executable, "-c", _PROBE], "asking torch what it was built with")
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["no output"])[-1]
        raise EnvironmentProblem(f"cannot import torch with {sys.executable}: {last}")
    t = json.loads(r.stdout.strip().splitlines()[-1])
    nvcc, nvcc_version, cuda_home = find_cuda()
    host = Host(python=sys.executable, torch_version=t["torch"], cxx11_abi=t["cxx11"], torch_cuda=t["cuda"],
                nvcc=nvcc, nvcc_version=nvcc_version, cuda_home=cuda_home, arch=machine(),
                os=platform.system().lower())
    cache.write_atomic(path, json.dumps({"key": key, "host": asdict(host)}))
    return host
