"""The built kernel, loaded the way users load it, for the CPU/CUDA and the NPU tests alike."""

import os
from pathlib import Path

import pytest

BUILD_DIR = Path(os.environ.get("KERNEL_BUILD_DIR", Path(__file__).resolve().parent.parent / "build"))


@pytest.fixture(scope="module")
def rmsnorm():
    kernels = pytest.importorskip("kernels")
    if not BUILD_DIR.is_dir():
        pytest.skip(f"rmsnorm kernel not built: no build directory at {BUILD_DIR} (set KERNEL_BUILD_DIR)")
    return kernels.get_local_kernel(BUILD_DIR)
