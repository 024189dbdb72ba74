"""Smoke tests for the activation kernel.

Build first (``kernel-builder build kernels_src/activation``), then run
``pytest kernels_src/activation/tests``. The build directory is taken from
KERNEL_BUILD_DIR, else the project's own ``build/``.
"""

import math
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

kernels = pytest.importorskip("kernels")

BUILD_DIR = Path(os.environ.get("KERNEL_BUILD_DIR", Path(__file__).resolve().parent.parent / "build"))
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(scope="module")
def activation():
    if not BUILD_DIR.is_dir():
        pytest.skip(f"activation kernel not built: no build directory at {BUILD_DIR} (set KERNEL_BUILD_DIR)")
    return kernels.get_local_kernel(BUILD_DIR)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("d", [1, 7, 64, 1000])
def test_gated(activation, dtype, d):
    x = torch.randn(3, 2 * d, device=DEVICE).to(dtype)
    a, b = x[:, :d].double(), x[:, d:].double()
    refs = {
        "silu_and_mul": a * torch.sigmoid(a) * b,
        "gelu_and_mul": 0.5 * a * (1 + torch.erf(a / math.sqrt(2))) * b,
        "gelu_tanh_and_mul": 0.5 * a * (1 + torch.tanh(math.sqrt(2 / math.pi) * (a + 0.044715 * a**3))) * b,
    }
    tol = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}[dtype]
    for op, ref in refs.items():
        out = x.new_empty(3, d)
        getattr(activation, op)(out, x)
        torch.testing.assert_close(out.double(), ref, rtol=tol, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_unary_and_layers(activation, dtype):
    x = torch.randn(4, 33, device=DEVICE).to(dtype)
    xd = x.double()
    refs = {
        "silu": F.silu(xd),
        "gelu": F.gelu(xd),
        "gelu_tanh": F.gelu(xd, approximate="tanh"),
        "gelu_fast": 0.5 * xd * (1 + torch.tanh(0.7978845608 * xd * (1 + 0.044715 * xd * xd))),
        "gelu_quick": xd * torch.sigmoid(1.702 * xd),
    }
    tol = {torch.float32: 1e-5, torch.bfloat16: 1.6e-2}[dtype]
    for op, ref in refs.items():
        out = torch.empty_like(x)
        getattr(activation, op)(out, x)
        torch.testing.assert_close(out.double(), ref, rtol=tol, atol=1e-5)
    y = activation.layers.SiluAndMul()(torch.cat([x, x], -1))
    torch.testing.assert_close(y.double(), refs["silu"] * xd, rtol=tol, atol=1e-5)
