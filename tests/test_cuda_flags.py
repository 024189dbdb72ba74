"""CUDA capability selection and -gencode flags, against the real nvcc on PATH (no GPU needed)."""

from __future__ import annotations

import pytest

from kernel_builder.backends import cuda
from kernel_builder.project.config import Kernel
from kernel_builder.build.host import Host, find_cuda

NVCC, NVCC_VERSION, CUDA_HOME = find_cuda()
pytestmark = pytest.mark.skipif(NVCC is None, reason="nvcc not found: capability selection is probed from nvcc")


def host() -> Host:
    return Host(python="python", torch_version="2.14.1+cu130", cxx11_abi=True, torch_cuda=NVCC_VERSION.rsplit(".", 1)[0],
                nvcc=NVCC, nvcc_version=NVCC_VERSION, cuda_home=CUDA_HOME, arch="x86_64", os="linux")


def kernel(*caps: str) -> Kernel:
    return Kernel(name="k", backend="cuda", depends=("torch",), src=("k.cu",), options={"cuda-capabilities": caps})


def test_defaults_follow_nvcc_and_get_ptx_on_the_highest():
    caps, notes = cuda.capabilities(kernel(), host())
    assert caps, notes
    assert caps[-1].endswith("+PTX") and sum(c.endswith("+PTX") for c in caps) == 1
    codes = cuda.supported_codes(NVCC)
    assert all(c.replace("+PTX", "").replace(".", "") in codes for c in caps)
    if NVCC_VERSION.startswith("13."):
        assert "7.0" not in caps and "9.0" in caps and "12.0+PTX" in caps


def test_kernel_list_keeps_suffixes_and_drops_what_nvcc_cannot_build():
    caps, notes = cuda.capabilities(kernel("1.0", "8.0", "9.0a", "10.0"), host())
    assert caps == ["8.0", "9.0a", "10.0+PTX"]
    assert any("1.0" in n for n in notes)
    flags = cuda.gencode_flags(caps)
    assert "-gencode=arch=compute_90a,code=sm_90a" in flags
    assert "-gencode=arch=compute_100,code=compute_100" in flags and len(flags) == 4


def test_explicit_ptx_and_restriction():
    caps, _ = cuda.capabilities(kernel("8.0", "9.0+PTX"), host(), restrict=["9.0"])
    assert caps == ["9.0+PTX"]
    assert cuda.gencode_flags(caps) == ["-gencode=arch=compute_90,code=sm_90", "-gencode=arch=compute_90,code=compute_90"]


def test_a_matrix_row_drops_what_its_nvcc_release_cannot_build():
    """A row planned outside its image (no nvcc to ask): Debian's nvcc 12.4 has no sm_100 / sm_120, so a kernel
    asking for them is told at planning time and its highest capability left gets the PTX those GPUs run."""
    row = Host(python="python", torch_version="2.9.1", cxx11_abi=True, torch_cuda="12.8", nvcc="/opt/cuda/bin/nvcc",
               nvcc_version="12.4", cuda_home="/opt/cuda", arch="x86_64", os="linux", probed=False)
    caps, notes = cuda.capabilities(kernel("8.0", "9.0", "10.0", "12.0"), row)
    assert caps == ["8.0", "9.0+PTX"]
    assert notes == [f"capability {c} is not supported by nvcc 12.4; skipped" for c in ("10.0", "12.0")]
    newer = Host(**{**row.__dict__, "nvcc_version": "12.8"})
    assert cuda.capabilities(kernel("8.0", "9.0", "10.0", "12.0"), newer) == (["8.0", "9.0", "10.0", "12.0+PTX"], [])
    assert cuda.known_codes("11.0") is None  # older than the table: the image's nvcc decides
