"""The CUDA backend: capabilities -> -gencode flags, nvcc options, the cuXY variant of torch's CUDA."""

from __future__ import annotations

import functools
import re
from importlib.util import find_spec
from pathlib import Path

from .. import settings
from ..errors import UsageError
from ..tools import run
from ..build.host import Host
from ..project.options import BuildOptions
from ..project.model import Kernel, Project
from ..variants import Variant, backend_string, major_minor as version_tuple
from .base import CppExtensionBackend, compiled_variant

CAPABILITY_RE = re.compile(r"^(\d+)\.(\d+)([af]?)(\+PTX)?$")
# Where the toolkit lives inside every matrix image (the Dockerfile makes this path).
IMAGE_CUDA_HOME = "/opt/cuda"

# What we build when a kernel names no capabilities, by nvcc major.minor (first match wins).
# CUDA 13 dropped everything below 7.5 and renamed Thor (10.1 -> 11.0).
DEFAULT_CAPABILITIES = [
    ((13, 0), ["7.5", "8.0", "8.6", "8.9", "9.0", "10.0", "11.0", "12.0"]),
    ((12, 8), ["7.5", "8.0", "8.6", "8.9", "9.0", "10.0", "12.0"]),
    ((12, 0), ["7.0", "7.5", "8.0", "8.6", "8.9", "9.0"]),
    ((11, 8), ["7.0", "7.5", "8.0", "8.6", "8.9", "9.0"]),
]
# torch's cpp_extension defines these for every .cu (COMMON_NVCC_FLAGS); Hugging Face's builder (torch's CMake
# package) does not, and kernels written for it use half/bfloat16 operators: the compile child drops them.
TORCH_NVCC_DEFINES_DROPPED = ("-D__CUDA_NO_HALF_OPERATORS__", "-D__CUDA_NO_HALF_CONVERSIONS__",
                              "-D__CUDA_NO_BFLOAT16_CONVERSIONS__", "-D__CUDA_NO_HALF2_OPERATORS__")
# What torch's CMake package (share/cmake/Caffe2/public/cuda.cmake) and Hugging Face's builder give every .cu
# on top of cpp_extension's --expt-relaxed-constexpr: __device__ lambdas in host code, and FP8 types enabled.
HF_NVCC_FLAGS = ["--expt-relaxed-constexpr", "--expt-extended-lambda"]
FP8_FROM = (11, 8)  # the first CUDA with the FP8 types; Hugging Face defines ENABLE_FP8 from there


# The sm_XY range each nvcc release emits (`nvcc --list-gpu-code`), for a matrix row planned outside its image,
# where there is no nvcc to ask: a kernel asking for 10.0 on Debian's nvcc 12.4 is told at planning time.
KNOWN_CODE_RANGES = [((13, 0), (75, 121)), ((12, 8), (50, 120)), ((12, 0), (50, 90)), ((11, 8), (35, 90))]


def known_codes(nvcc_version: str | None) -> range | None:
    """The sm numbers an nvcc of this release emits, from the table above; None when the version is unknown."""
    if not nvcc_version:
        return None
    mm = version_tuple(nvcc_version)
    span = next((lo_hi for since, lo_hi in KNOWN_CODE_RANGES if mm >= since), None)
    return range(span[0], span[1] + 1) if span else None


@functools.lru_cache(maxsize=None)
def supported_codes(nvcc: str) -> frozenset[str]:
    """The sm_XY codes this nvcc can emit (`nvcc --list-gpu-code`): probed, not assumed."""
    out = run([nvcc, "--list-gpu-code"], "asking nvcc which GPU codes it emits", timeout=60).stdout
    return frozenset(re.findall(r"sm_(\d+[af]?)", out))


def _code(cap: str) -> tuple[str, str, bool]:
    """"9.0a" -> ("90a", "90", False); "12.0+PTX" -> ("120", "120", True)."""
    m = CAPABILITY_RE.match(cap)
    return f"{m.group(1)}{m.group(2)}{m.group(3)}", f"{m.group(1)}{m.group(2)}", bool(m.group(4))


def capabilities(kernel: Kernel | None, host: Host, restrict: list[str] | None = None) -> tuple[list[str], list[str]]:
    """(capabilities to build, notes about dropped ones). The highest plain capability also gets PTX."""
    nvcc_mm = version_tuple(host.nvcc_version)
    default = next(caps for mm, caps in DEFAULT_CAPABILITIES if nvcc_mm >= mm)
    declared = kernel.options.get("cuda-capabilities", ()) if kernel else ()
    wanted = list(declared) if declared else list(default)
    codes = supported_codes(host.nvcc) if host.probed else None  # a matrix row: its image decides, ...
    known = None if host.probed else known_codes(host.nvcc_version)  # ... but what its nvcc cannot do is known
    keep, notes = [], []
    for cap in wanted:
        code, base, _ = _code(cap)
        if (codes is not None and base not in codes) or (known is not None and int(base) not in known):
            notes.append(f"capability {cap} is not supported by nvcc {host.nvcc_version}; skipped")
        elif restrict and cap.split("+")[0] not in restrict and cap.split("+")[0].rstrip("af") not in restrict:
            continue
        else:
            keep.append(cap)
    if keep and not any(c.endswith("+PTX") for c in keep):
        plain = [c for c in keep if not c[-1] in "af"]
        if plain:
            top = max(plain, key=version_tuple)
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


class CUDA(CppExtensionBackend):
    family = "cuda"
    extension = "CUDAExtension"
    kernel_keys = frozenset({"cuda-capabilities", "cuda-flags", "cuda-minver"})
    general_keys = frozenset({"minver", "maxver"})
    row_keys = frozenset({"cuda"})
    scaffold = ("{module}_cuda/{module}.cu", "init/kernel_cuda.cu.j2")

    # --- build.toml ---
    def read_kernel(self, reader, prefix: str, table: dict) -> dict:
        caps = reader.str_list(table, "cuda-capabilities", prefix, unique=True)
        for c in caps:
            m = CAPABILITY_RE.match(c)
            if not m or not (3 <= int(m.group(1)) <= 13):
                reader.fail(f"{prefix}.cuda-capabilities",
                            "must be a compute capability like \"8.0\", \"9.0a\" or \"12.0+PTX\"", c)
        return {"cuda-capabilities": caps, "cuda-flags": reader.str_list(table, "cuda-flags", prefix),
                "cuda-minver": reader.version(table, "cuda-minver", prefix)}

    def read_general(self, reader, prefix: str, table: dict) -> dict:
        minver, maxver = reader.version(table, "minver", prefix), reader.version(table, "maxver", prefix)
        if minver and maxver and version_tuple(minver) > version_tuple(maxver):
            reader.fail(f"{prefix}.minver", f"is above maxver {maxver}", minver)
        return {"minver": minver, "maxver": maxver}

    # --- matrix.toml ---
    def read_row(self, fail, row: dict, image) -> dict:
        cuda = row.get("cuda")
        if not isinstance(cuda, str) or not re.fullmatch(r"\d+\.\d", cuda):
            fail("cuda", f"a cuda row needs torch's CUDA like \"13.0\" (got {cuda!r})")
        if not image.cuda_home:
            fail("image", f"image {image.name} has no cuda-home: it cannot build CUDA")
        return {"torch_cuda": cuda, "nvcc": f"{IMAGE_CUDA_HOME}/bin/nvcc", "nvcc_version": cuda,
                "cuda_home": IMAGE_CUDA_HOME}

    def container_env(self, host: Host) -> dict[str, str]:
        return {"CUDA_HOME": IMAGE_CUDA_HOME}

    # --- hosts and variants ---
    def unavailable(self, host: Host) -> str | None:
        if not host.torch_cuda:
            return f"torch {host.torch_version} is not a CUDA build"
        if not host.nvcc:
            return "nvcc not found (set CUDA_HOME or put nvcc on PATH)"
        if host.nvcc_version.split(".")[0] != host.torch_cuda.split(".")[0]:
            return f"nvcc {host.nvcc_version} and torch's CUDA {host.torch_cuda} differ in major version"
        return None

    def variant(self, host: Host) -> Variant:
        return compiled_variant(host, backend_string(self.family, host.torch_cuda))

    def can_load(self, variant: Variant, host: Host) -> bool:
        """The loader takes a cuXY variant whose CUDA is torch's major and not newer than its minor."""
        if not host.torch_cuda:
            return False
        if variant.kind == "noarch":
            return True
        maj, mnr = version_tuple(host.torch_cuda)
        return variant.backend_version[0] == maj and variant.backend_version[1] <= mnr

    def gate(self, project: Project, host: Host) -> str | None:
        limits = project.general.backend_tables.get(self.family, {})
        cuda = version_tuple(host.torch_cuda)
        if limits.get("minver") and cuda < version_tuple(limits["minver"]):
            return f"CUDA {host.torch_cuda} is below general.cuda.minver {limits['minver']}"
        if limits.get("maxver") and cuda > version_tuple(limits["maxver"]):
            return f"CUDA {host.torch_cuda} is above general.cuda.maxver {limits['maxver']}"
        return None

    def select_kernels(self, project: Project, kernels, host: Host, options: BuildOptions):
        keep, notes = [], []
        for k in kernels:
            minver = k.options.get("cuda-minver")
            if minver and version_tuple(host.torch_cuda) < version_tuple(minver):
                notes.append(f"kernel.{k.name}: skipped, needs CUDA {minver} (have {host.torch_cuda})")
            else:
                keep.append(k)
        for k in keep:
            caps, dropped = capabilities(k, host, options.cuda_archs)
            notes += [f"kernel.{k.name}: {n}" for n in dropped]
            if not caps:
                raise UsageError(f"{project.file}: kernel.{k.name}.cuda-capabilities: none of "
                                 f"{list(k.options.get('cuda-capabilities', ())) or 'the defaults'} can be built "
                                 f"with nvcc {host.nvcc_version}" + (" and --cuda-archs" if options.cuda_archs else ""))
        return tuple(keep), notes

    # --- planning ---
    def defines(self) -> list[str]:
        return ["-DCUDA_KERNEL"]

    def kernel_flags(self, project: Project, kernel: Kernel, host: Host, options: BuildOptions) -> dict:
        caps, _ = capabilities(kernel, host, options.cuda_archs)
        threads = max(1, min(len(caps), 4))
        fp8 = ["-DENABLE_FP8"] if version_tuple(host.nvcc_version or host.torch_cuda) >= FP8_FROM else []
        nvcc = (["-O3", "-DNDEBUG", f"--threads={threads}", "-Xcompiler", "-fno-gnu-unique", "-Xcompiler", "-g0"]
                + HF_NVCC_FLAGS + fp8 + gencode_flags(caps) + list(kernel.options.get("cuda-flags", ())))
        return {"cxx": list(kernel.cxx_flags), "nvcc": nvcc}

    def archs(self, project: Project, host: Host, options: BuildOptions) -> list[str] | None:
        seen: list[str] = []
        for k in project.kernels_for(self.family):
            for cap in capabilities(k, host, options.cuda_archs)[0]:
                if cap not in seen:
                    seen.append(cap)
        return sorted(seen, key=lambda c: (version_tuple(c.rstrip("+PTX").rstrip("af")), c))

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
        return f"{super().toolchain(host)} | nvcc {host.nvcc_version} | {host.cuda_home}"

    torch_flags_dropped = TORCH_NVCC_DEFINES_DROPPED

    def compile_env(self, plan, host: Host) -> dict[str, str]:
        env = {"CUDA_HOME": host.cuda_home}
        if settings.current().torch_cuda_arch_list is None:
            env["TORCH_CUDA_ARCH_LIST"] = ";".join(a.replace("+PTX", "") for a in plan.archs or [])
        return env


BACKEND = CUDA()
