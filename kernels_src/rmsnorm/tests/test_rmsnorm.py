"""Smoke tests for the rmsnorm kernel.

Build first (``kernel-builder build kernels_src/rmsnorm``), then run
``pytest kernels_src/rmsnorm/tests``. The build directory is taken from
KERNEL_BUILD_DIR, else the project's own ``build/``.
"""

import pytest
import torch

kernels = pytest.importorskip("kernels")

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


def reference(x, w, eps):
    x64 = x.double()
    return x64 * torch.rsqrt(x64.pow(2).mean(-1, keepdim=True) + eps) * w.double()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("d", [1, 7, 128, 1000])
def test_rms_norm(rmsnorm, dtype, d):
    x = torch.randn(5, d, device=DEVICE).to(dtype)
    w = torch.randn(d, device=DEVICE).to(dtype)
    out = torch.empty_like(x)
    rmsnorm.rms_norm(out, x, w, 1e-6)
    torch.testing.assert_close(out.double(), reference(x, w, 1e-6), rtol=TOL[dtype], atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_add_rms_norm(rmsnorm, dtype):
    x, r = (torch.randn(6, 200, device=DEVICE).to(dtype) for _ in range(2))
    w = torch.randn(200, device=DEVICE).to(dtype)
    out, res_out = torch.empty_like(x), torch.empty_like(x)
    rmsnorm.fused_add_rms_norm(out, res_out, x, r, w, 1e-5)
    assert torch.equal(res_out, x + r)
    torch.testing.assert_close(out.double(), reference(x + r, w, 1e-5), rtol=TOL[dtype], atol=1e-4)


def test_layer(rmsnorm):
    class Host(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.randn(64, device=DEVICE))
            self.variance_epsilon = 1e-6

    host = Host()
    x = torch.randn(2, 3, 64, device=DEVICE)
    with torch.no_grad():
        got = rmsnorm.layers.RMSNorm.forward(host, x)
        torch.testing.assert_close(got.double(), reference(x, host.weight, 1e-6), rtol=1e-5, atol=1e-5)
