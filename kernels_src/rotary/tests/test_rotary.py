"""Smoke tests for the rotary kernel.

Build first (``kernel-builder build kernels_src/rotary``), then run
``pytest kernels_src/rotary/tests``. The build directory is taken from
KERNEL_BUILD_DIR, else the project's own ``build/``. The full suite is the
repository's tests/test_rotary.py.
"""

import os
from pathlib import Path

import pytest
import torch

kernels = pytest.importorskip("kernels")

BUILD_DIR = Path(os.environ.get("KERNEL_BUILD_DIR", Path(__file__).resolve().parent.parent / "build"))
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TOL = {torch.float32: 2e-6, torch.float16: 5e-4, torch.bfloat16: 4e-3}


@pytest.fixture(scope="module")
def rotary():
    if not BUILD_DIR.is_dir():
        pytest.skip(f"rotary kernel not built: no build directory at {BUILD_DIR} (set KERNEL_BUILD_DIR)")
    return kernels.get_local_kernel(BUILD_DIR)


def reference(x, cos, sin):
    x, cos, sin = x.double(), cos.double().unsqueeze(1), sin.double().unsqueeze(1)
    h = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., h:], x[..., :h]), dim=-1) * sin


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("d", [2, 6, 64, 128])
def test_apply_rotary_pos_emb(rotary, dtype, d):
    q = torch.randn(2, 5, 8, d, device=DEVICE).transpose(1, 2).to(dtype)  # [2, 8, 5, d], strided
    k = torch.randn(2, 2, 5, d, device=DEVICE).to(dtype)  # GQA: 2 k heads
    angles = torch.rand(2, 5, d, device=DEVICE) * 6.2832
    cos, sin = angles.cos().to(dtype), angles.sin().to(dtype)
    q_out, k_out = rotary.apply_rotary_pos_emb(q, k, cos, sin)
    torch.testing.assert_close(q_out.double(), reference(q, cos, sin), rtol=TOL[dtype], atol=1e-4)
    torch.testing.assert_close(k_out.double(), reference(k, cos, sin), rtol=TOL[dtype], atol=1e-4)


def test_layer(rotary):
    q = torch.randn(1, 4, 3, 32, device=DEVICE)
    k = torch.randn(1, 1, 3, 32, device=DEVICE)
    cos, sin = torch.randn(1, 3, 32, device=DEVICE), torch.randn(1, 3, 32, device=DEVICE)
    q_out, k_out = rotary.layers.ApplyRotaryPosEmb()(q, k, cos, sin)
    torch.testing.assert_close(q_out.double(), reference(q, cos, sin), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(k_out.double(), reference(k, cos, sin), rtol=1e-5, atol=1e-5)
