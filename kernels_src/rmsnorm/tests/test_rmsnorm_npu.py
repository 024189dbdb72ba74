"""Tests of the Ascend C rmsnorm kernels (the cann variant), on an Ascend NPU or in kernel-builder's CPU twin.

They load the build directory (KERNEL_BUILD_DIR, else the project's own ``build/``) the way users do
(``kernels.get_local_kernel``). Where torch_npu and an NPU exist, that picks the cann variant and the tensors
live on the NPU. Where the build directory holds a twin build (``kernel-builder build --cann-twin --soc SOC``:
the same Ascend C sources compiled for the CPU, metadata.json provenance.twin), the same cases run on CPU
tensors, with the SoC the twin stands for deciding what the kernel must refuse. Everywhere else they are
skipped with a one-line reason. On a real NPU they have never run: none was available when they were written.
"""

import json
import os
from pathlib import Path

import pytest
import torch

kernels = pytest.importorskip("kernels")

BUILD_DIR = Path(os.environ.get("KERNEL_BUILD_DIR", Path(__file__).resolve().parent.parent / "build"))


def _twin_soc():
    """The SoC of a twin build in BUILD_DIR, else None."""
    for meta in sorted(BUILD_DIR.glob("*/metadata.json")) if BUILD_DIR.is_dir() else ():
        twin = (json.loads(meta.read_text()).get("provenance") or {}).get("twin")
        if twin:
            return twin["soc"]
    return None


def _target():
    """(device, SoC, None) where these tests can run, else (None, None, why not)."""
    try:
        import torch_npu  # noqa: F401  (registers the "npu" device)

        if hasattr(torch, "npu") and torch.npu.is_available():
            return "npu", str(torch.npu.get_device_name()), None
    except Exception:  # ImportError, or torch_npu failing without CANN
        pass
    soc = _twin_soc()
    if soc:
        return "cpu", soc, None
    return None, None, ("no Ascend NPU (torch_npu, CANN and an NPU) and no twin build in "
                        f"{BUILD_DIR} (kernel-builder build --cann-twin --soc SOC)")


DEVICE, SOC, REASON = _target()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")
M200 = bool(SOC and SOC.startswith("Ascend310P"))  # Atlas 300I/V Pro: no bf16 vector math, no DataCopyPad
UB_BYTES = (256 if M200 else 192) * 1024  # one vector core's Unified Buffer (rmsnorm_tiling.h)

# Same tolerances as the CPU/CUDA tests (tests/test_rmsnorm.py): float32 math,
# rounded twice to 16-bit types.
TOL = {torch.float32: (1e-5, 1e-5), torch.float16: (2e-3, 1e-4), torch.bfloat16: (1.6e-2, 1e-4)}
DTYPES = [torch.float32, torch.float16] + ([] if M200 else [torch.bfloat16])
dtype_ids = lambda d: str(d).split(".")[-1]  # noqa: E731


def dev(t):
    return t.to(DEVICE)


def reference(x, w, eps):
    h = x.double()
    return (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype).double() * w.double()


def whole_blocks(cols, dtype):
    return cols * torch.tensor([], dtype=dtype).element_size() % 32 == 0


def test_loaded_variant_is_the_ascend_kernel(rmsnorm):
    variant = Path(rmsnorm.__file__).parent
    if DEVICE == "cpu":  # a twin build is a CPU variant whose metadata says what it stands for
        twin = json.loads((variant / "metadata.json").read_text())["provenance"]["twin"]
        assert twin["backend"] == "cann" and twin["soc"] == SOC
    else:
        assert "_cann_" in (variant / "_ops.py").read_text(), "kernels picked a non-cann variant on an NPU machine"


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
@pytest.mark.parametrize("shape", [(1, 16), (5, 128), (3, 4096), (2, 3, 64), (64, 2048), (7, 1000), (9, 33),
                                   (50, 8), (3, 8192)])
def test_rms_norm(rmsnorm, dtype, shape):
    if M200 and not whole_blocks(shape[-1], dtype):
        pytest.skip("Ascend310P rows must be whole 32-byte blocks (test_m200_refuses_partial_blocks)")
    x = dev(torch.randn(*shape).to(dtype))
    w = dev(torch.randn(shape[-1]).to(dtype))
    out = torch.empty_like(x)
    rmsnorm.rms_norm(out, x, w, 1e-6)
    rtol, atol = TOL[dtype]
    torch.testing.assert_close(out.cpu().double(), reference(x.cpu(), w.cpu(), 1e-6), rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
@pytest.mark.parametrize("shape", [(6, 256), (61, 1000), (2, 4096)])
def test_fused_add_rms_norm(rmsnorm, dtype, shape):
    if M200 and not whole_blocks(shape[-1], dtype):
        pytest.skip("Ascend310P rows must be whole 32-byte blocks")
    x, r = (dev(torch.randn(*shape).to(dtype)) for _ in range(2))
    w = dev(torch.randn(shape[-1]).to(dtype))
    out, res_out = torch.empty_like(x), torch.empty_like(x)
    rmsnorm.fused_add_rms_norm(out, res_out, x, r, w, 1e-5)
    expect_res = (x.cpu() + r.cpu())
    assert torch.equal(res_out.cpu(), expect_res)
    rtol, atol = TOL[dtype]
    torch.testing.assert_close(out.cpu().double(), reference(expect_res, w.cpu(), 1e-5), rtol=rtol, atol=atol)


def test_fused_add_in_place(rmsnorm):
    x, r = (dev(torch.randn(4, 512).half()) for _ in range(2))
    w = dev(torch.randn(512).half())
    expect_res = x.cpu() + r.cpu()
    rmsnorm.fused_add_rms_norm(x, r, x, r, w, 1e-6)
    assert torch.equal(r.cpu(), expect_res)


@pytest.mark.parametrize("cols, row_stride", [(64, 96), (40, 56), (1000, 1016)])
def test_strided_rows(rmsnorm, cols, row_stride):
    if M200 and not whole_blocks(cols, torch.float32):
        pytest.skip("Ascend310P rows must be whole 32-byte blocks")
    base = dev(torch.randn(8, row_stride))
    x = base[:, :cols]  # rows row_stride elements apart
    w = dev(torch.randn(cols))
    out = dev(torch.empty(8, cols))
    rmsnorm.rms_norm(out, x, w, 1e-6)
    torch.testing.assert_close(out.cpu().double(), reference(x.cpu(), w.cpu(), 1e-6), rtol=1e-5, atol=1e-5)


def test_rows_over_the_unified_buffer_are_refused(rmsnorm):
    cols = UB_BYTES // 4 + 64  # one float32 row alone is larger than a vector core's buffer
    x = dev(torch.randn(2, cols))
    with pytest.raises(RuntimeError, match="does not fit one vector core's buffer"):
        rmsnorm.rms_norm(torch.empty_like(x), x, dev(torch.randn(cols)), 1e-6)


@pytest.mark.skipif(not M200, reason="Ascend310P (m200) only: other SoCs compute bfloat16")
def test_m200_refuses_bfloat16(rmsnorm):
    x = dev(torch.randn(2, 64).bfloat16())
    with pytest.raises(RuntimeError, match="bfloat16 is not supported on Ascend310P"):
        rmsnorm.rms_norm(torch.empty_like(x), x, dev(torch.randn(64).bfloat16()), 1e-6)


@pytest.mark.skipif(not M200, reason="Ascend310P (m200) only: other SoCs pad partial 32-byte blocks")
def test_m200_refuses_partial_blocks(rmsnorm):
    x = dev(torch.randn(3, 33))
    with pytest.raises(RuntimeError, match="multiples of 8 elements"):
        rmsnorm.rms_norm(torch.empty_like(x), x, dev(torch.randn(33)), 1e-6)


@pytest.mark.skipif(DEVICE == "cpu", reason="in the twin the NPU's tensors are CPU tensors")
def test_cpu_tensor_refused(rmsnorm):
    x = torch.randn(2, 32)
    with pytest.raises(RuntimeError):
        rmsnorm.rms_norm(torch.empty_like(x), x, torch.randn(32), 1e-6)


def test_layer_matches_transformers_math(rmsnorm):
    class Host(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(dev(torch.randn(128).half()))
            self.variance_epsilon = 1e-6

    host = Host()
    x = dev(torch.randn(2, 3, 128).half())
    with torch.no_grad():
        got = rmsnorm.layers.RMSNorm.forward(host, x)
    torch.testing.assert_close(got.cpu().double(), reference(x.cpu(), host.weight.cpu(), 1e-6), rtol=2e-3, atol=1e-4)
