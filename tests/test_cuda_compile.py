"""CUDA variants of kernels_src compiled here, without a GPU: nvcc + the CUDA build of torch.

Runs with .venv-cu (made by `bash scripts/setup.sh --cuda`) or KB_CUDA_PYTHON=<python with CUDA torch>.
Only sm_90 (+PTX) is built to keep CI short; the full capability list is built on the GPU machine
(scripts/gpu_verify.sh). The import check still runs: loading the .so needs the CUDA libraries, not a GPU.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import KERNELS_SRC, REPO

CUDA_PYTHON = Path(os.environ.get("KB_CUDA_PYTHON", REPO / ".venv-cu" / "bin" / "python"))


@pytest.fixture(scope="module")
def cuda_python():
    if not CUDA_PYTHON.exists():
        pytest.skip(f"no CUDA build of torch at {CUDA_PYTHON} (bash scripts/setup.sh --cuda makes one)")
    if not (shutil.which("nvcc") or os.environ.get("CUDA_HOME")):
        pytest.skip("nvcc not found and CUDA_HOME unset: CUDA variants cannot be compiled here")
    return CUDA_PYTHON


@pytest.mark.parametrize("name", ["activation", "rmsnorm", "rotary"])
def test_cuda_variant_compiles_and_checks(cuda_python, name, tmp_path):
    out = tmp_path / name
    r = subprocess.run([str(cuda_python), "-m", "kernel_builder", "build", str(KERNELS_SRC / name), "--out", str(out),
                        "--cuda-archs", "9.0"], capture_output=True, text=True, timeout=3000)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    cu = [p for p in out.iterdir() if "-cu1" in p.name]
    assert len(cu) == 1, list(out.iterdir())
    meta = json.loads((cu[0] / "metadata.json").read_text())
    assert meta["backend"] == {"type": "cuda", "archs": ["9.0+PTX"]}
    assert meta["id"].startswith(f"_{name}_cuda_")
    c = subprocess.run([str(cuda_python), "-m", "kernel_builder", "check", str(out)], capture_output=True, text=True,
                       timeout=600)
    assert c.returncode == 0, c.stdout[-3000:] + c.stderr[-2000:]
    assert "import check skipped" not in c.stdout, "the CUDA variant must be import-checked (no GPU needed)"
