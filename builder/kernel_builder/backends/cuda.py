"""The CUDA backend: capabilities -> -gencode flags, nvcc options, the cuXY variant of torch's CUDA."""

from __future__ import annotations

import functools
import re
import subprocess
from importlib.util import find_spec
from pathlib import Path

from ..config import CAPABILITY_RE, Kernel, Project
from ..host import Host
from ..variants import Variant

# What we build when a kernel names no capabilities, by nvcc major.minor (first match wins).
# CUDA 13 dropped everything below 7.5 and renamed Thor (10.1 -> 11.0).
DEFAULT_CAPABILITIES = [
    ((13, 0), ["7.5", "8.0", "8.6", "8.9", "9.0", "10.0", "11.0", "12.0"]),
    ((12, 8), ["7.5", "8.0", "8.6", "8.9", "9.0", "10.0", "12.0"]),
    ((12, 0), ["7.0", "7.5", "8.0", "8.6", "8.9", "9.0"]),
    ((11, 8), ["7.0", "7.5", "8.0", "8.6", "8.9", "9.0"]),
]
# torch's cpp_extension defines these for every .cu; Hugging Face's builder does not, and kernels written
# for it use half/bfloat16 operators, so undo them.
UNDO_TORCH_NVCC_DEFINES = ["-U__CUDA_NO_HALF_OPERATORS__", "-U__CUDA_NO_HALF_CONVERSIONS__",
                           "-U__CUDA_NO_BFLOAT16_CONVERSIONS__", "-U__CUDA_NO_HALF2_OPERATORS__"]


def _vt(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split(".")[:2])


@functools.lru_cache(maxsize=None)
def supported_codes(nvcc: str) -> frozenset[str]:
    """The sm_XY codes this nvcc can emit (`nvcc --list-gpu-code`): probed, not assumed."""
    out = subprocess.run([nvcc, "--list-gpu-code"], capture_output=True, text=True, timeout=60).stdout
    return frozenset(re.findall(r"sm_(\d+[af]?)", out))


def _code(cap: str) -> tuple[str, str, bool]:
    """"9.0a" -> ("90a", "90", False); "12.0+PTX" -> ("120", "120", True)."""
    m = CAPABILITY_RE.match(cap)
    return f"{m.group(1)}{m.group(2)}{m.group(3)}", f"{m.group(1)}{m.group(2)}", bool(m.group(4))


def capabilities(kernel: Kernel | None, host: Host, restrict: list[str] | None = None) -> tuple[list[str], list[str]]:
    """(capabilities to build, notes about dropped ones). The highest plain capability also gets PTX."""
    nvcc_mm = _vt(host.nvcc_version)
    default = next(caps for mm, caps in DEFAULT_CAPABILITIES if nvcc_mm >= mm)
    wanted = list(kernel.cuda_capabilities) if kernel and kernel.cuda_capabilities else list(default)
    codes = supported_codes(host.nvcc) if host.probed else None  # a matrix row: its image decides
    keep, notes = [], []
    for cap in wanted:
        code, base, _ = _code(cap)
        if codes is not None and base not in codes:
            notes.append(f"capability {cap} is not supported by nvcc {host.nvcc_version}; skipped")
        elif restrict and cap.split("+")[0] not in restrict and cap.split("+")[0].rstrip("af") not in restrict:
            continue
        else:
            keep.append(cap)
    if keep and not any(c.endswith("+PTX") for c in keep):
        plain = [c for c in keep if not c[-1] in "af"]
        if plain:
            top = max(plain, key=_vt)
            keep[keep.index(top)] = top + "+PTX"
    return keep, notes


def gencode_flags(caps: list[str]) -> list[str]:
    flags = []
    for cap in caps:
        code, _, ptx = _code(cap)
        flags.append(f"-gencode=arch=compute_{code},code=sm_{code}")
        if ptx:
            flags.append(f"-gencode=arch=compute_{code},code=compute_{code}")
    return flags


class CUDA:
    family = "cuda"

    def unavailable(self, host: Host) -> str | None:
        return host.can_build("cuda")

    def variant(self, host: Host) -> Variant:
        return host.variant("cuda")

    def defines(self) -> list[str]:
        return ["-DCUDA_KERNEL"]

    def kernel_flags(self, project: Project, kernel: Kernel, host: Host, options: dict) -> dict:
        caps, _ = capabilities(kernel, host, options.get("cuda_archs"))
        threads = max(1, min(len(caps), 4))
        nvcc = (["-O3", f"--threads={threads}", "-Xcompiler", "-fno-gnu-unique", "-Xcompiler", "-g0"]
                + UNDO_TORCH_NVCC_DEFINES + gencode_flags(caps) + list(kernel.cuda_flags))
        return {"cxx": list(kernel.cxx_flags), "nvcc": nvcc}

    def archs(self, project: Project, host: Host, options: dict) -> list[str] | None:
        seen: list[str] = []
        for k in project.kernels_for("cuda"):
            for cap in capabilities(k, host, options.get("cuda_archs"))[0]:
                if cap not in seen:
                    seen.append(cap)
        return sorted(seen, key=lambda c: (_vt(c.rstrip("+PTX").rstrip("af")), c))

    def fallback_include_dirs(self, host: Host) -> list[str]:
        """Headers a pip-assembled toolkit lacks (cuBLAS, cuSPARSE, ...) from the CUDA wheels torch
        depends on; searched after CUDA_HOME so the toolkit's own headers win."""
        spec = find_spec("torch")
        if spec is None or not spec.origin:
            return []
        nvidia = Path(spec.origin).parent.parent / "nvidia"
        home_inc = Path(host.cuda_home or "/nonexistent") / "include"
        dirs = sorted(str(d) for d in nvidia.glob("*/include") if d.is_dir())
        return [d for d in dirs if Path(d) != home_inc] if not (home_inc / "cusparse.h").exists() else []

    def toolchain(self, host: Host) -> str:
        from .cpu import cxx_version

        return f"{cxx_version()} | nvcc {host.nvcc_version} | {host.cuda_home}"
