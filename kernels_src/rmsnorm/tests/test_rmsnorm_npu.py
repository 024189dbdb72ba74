"""NPU tests for the Ascend C rmsnorm kernels (the cann variant).

They run where torch_npu and an Ascend NPU exist, against the build directory
(KERNEL_BUILD_DIR, else the project's own ``build/``), loading it the way users
do (``kernels.get_local_kernel``, which picks the cann variant matching the
installed CANN); everywhere else they are skipped with a one-line reason.
These tests have never run: no NPU was available when they were written.
"""

from pathlib import Path

import pytest
import torch

kernels = pytest.importorskip("kernels")

def _npu_reason():
    try:
        import torch_npu  # noqa: F401  (registers the "npu" device)
    except Exception as e:  # ImportError, or torch_npu failing without CANN
        return f"torch_npu is not usable here ({type(e).__name__}): NPU tests need torch_npu, CANN and an NPU"
    if not (hasattr(torch, "npu") and torch.npu.is_available()):
        return "no Ascend NPU visible to torch_npu"
    return None


REASON = _npu_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")

# Same tolerances as the CPU/CUDA tests (tests/test_rmsnorm.py): float32 math,
# rounded twice to 16-bit types.
TOL = {torch.float32: (1e-5, 1e-5), torch.float16: (2e-3, 1e-4), torch.bfloat16: (1.6e-2, 1e-4)}


def _soc() -> str:
    return str(torch.npu.get_device_name())


def _dtypes():
    # Ascend310P (m200) has no bfloat16 vector math; the kernel refuses it there.
    out = [torch.float32, torch.float16]
    if REASON is None and not _soc().startswith("Ascend310P"):
        out.append(torch.bfloat16)
    return out


def reference(x, w, eps):
    h = x.double()
    return (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype).double() * w.double()


def test_loaded_variant_is_cann(rmsnorm):
    ops_file = Path(rmsnorm.__file__).with_name("_ops.py").read_text()
    assert "_cann_" in ops_file, "kernels picked a non-cann variant on an NPU machine"


@pytest.mark.parametrize("dtype", _dtypes(), ids=lambda d: str(d).split(".")[-1])
@pytest.mark.parametrize("shape", [(1, 16), (5, 128), (3, 4096), (2, 3, 64), (64, 2048), (7, 1000)])
def test_rms_norm(rmsnorm, dtype, shape):
    if shape[-1] % 16 and _soc().startswith("Ascend310P"):
        pytest.skip("Ascend310P rows must be whole 32-byte blocks")
    x = torch.randn(*shape).to(dtype).npu()
    w = torch.randn(shape[-1]).to(dtype).npu()
    out = torch.empty_like(x)
    rmsnorm.rms_norm(out, x, w, 1e-6)
    rtol, atol = TOL[dtype]
    torch.testing.assert_close(out.cpu().double(), reference(x.cpu(), w.cpu(), 1e-6), rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype", _dtypes(), ids=lambda d: str(d).split(".")[-1])
def test_fused_add_rms_norm(rmsnorm, dtype):
    x, r = (torch.randn(6, 256).to(dtype).npu() for _ in range(2))
    w = torch.randn(256).to(dtype).npu()
    out, res_out = torch.empty_like(x), torch.empty_like(x)
    rmsnorm.fused_add_rms_norm(out, res_out, x, r, w, 1e-5)
    expect_res = (x.cpu() + r.cpu())
    assert torch.equal(res_out.cpu(), expect_res)
    rtol, atol = TOL[dtype]
    torch.testing.assert_close(out.cpu().double(), reference(expect_res, w.cpu(), 1e-5), rtol=rtol, atol=atol)


def test_fused_add_in_place(rmsnorm):
    x, r = (torch.randn(4, 512).half().npu() for _ in range(2))
    w = torch.randn(512).half().npu()
    expect_res = x.cpu() + r.cpu()
    rmsnorm.fused_add_rms_norm(x, r, x, r, w, 1e-6)
    assert torch.equal(r.cpu(), expect_res)


def test_strided_rows(rmsnorm):
    base = torch.randn(8, 96).npu()
    x = base[:, :64]  # rows 96 elements apart
    w = torch.randn(64).npu()
    out = torch.empty(8, 64).npu()
    rmsnorm.rms_norm(out, x, w, 1e-6)
    torch.testing.assert_close(out.cpu().double(), reference(x.cpu(), w.cpu(), 1e-6), rtol=1e-5, atol=1e-5)


def test_cpu_tensor_refused(rmsnorm):
    x = torch.randn(2, 32)
    with pytest.raises(RuntimeError):
        rmsnorm.rms_norm(torch.empty_like(x), x, torch.randn(32), 1e-6)


def test_layer_matches_transformers_math(rmsnorm):
    class Host(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.randn(128).half().npu())
            self.variance_epsilon = 1e-6

    host = Host()
    x = torch.randn(2, 3, 128).half().npu()
    with torch.no_grad():
        got = rmsnorm.layers.RMSNorm.forward(host, x)
    torch.testing.assert_close(got.cpu().double(), reference(x.cpu(), host.weight.cpu(), 1e-6), rtol=2e-3, atol=1e-4)
