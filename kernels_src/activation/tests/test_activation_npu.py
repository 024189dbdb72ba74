"""Tests of the Ascend C activation kernels (the cann variant), on an Ascend NPU or in kernel-builder's CPU twin.

They load the build directory (KERNEL_BUILD_DIR, else the project's own ``build/``) the way users do
(``kernels.get_local_kernel``). Where torch_npu and an NPU exist, the tensors live on the NPU. Where the
build directory holds a twin build (``kernel-builder build --cann-twin --soc SOC``: the same Ascend C sources
compiled for the CPU, metadata.json provenance.twin), the same cases run on CPU tensors, with the SoC the
twin stands for deciding what the kernel must refuse. Everywhere else they are skipped with a one-line
reason. On a real NPU they have never run: none was available when they were written.
"""

import json
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

kernels = pytest.importorskip("kernels")

BUILD_DIR = Path(os.environ.get("KERNEL_BUILD_DIR", Path(__file__).resolve().parent.parent / "build"))


def _twin_soc():
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

DTYPES = [torch.float32, torch.float16] + ([] if M200 else [torch.bfloat16])
# relative to max(1, |reference|): float32 math, rounded once to the 16-bit types
TOL = {torch.float32: 2e-6, torch.float16: 1e-3, torch.bfloat16: 8e-3}
GATED = ["silu_and_mul", "gelu_and_mul", "gelu_tanh_and_mul"]
UNARY = ["silu", "gelu", "gelu_tanh", "gelu_fast", "gelu_quick"]
# hidden sizes: odd and not whole 32-byte rows (c220 pads them), several 4096-element tiles
SIZES = [16, 1024, 4112] if M200 else [1, 8, 33, 1000, 4096, 9000]
dtype_ids = lambda d: str(d).split(".")[-1]  # noqa: E731


@pytest.fixture(scope="module")
def act():
    return kernels.get_local_kernel(BUILD_DIR)


def reference(op, x):
    x = x.double()
    if op.endswith("_and_mul"):
        d = x.shape[-1] // 2
        return reference(op[: -len("_and_mul")], x[..., :d]) * x[..., d:]
    return {"silu": lambda: F.silu(x), "gelu": lambda: F.gelu(x), "gelu_tanh": lambda: F.gelu(x, approximate="tanh"),
            "gelu_fast": lambda: 0.5 * x * (1 + torch.tanh(0.7978845608 * x * (1 + 0.044715 * x * x))),
            "gelu_quick": lambda: x * torch.sigmoid(1.702 * x)}[op]()


def check(act, op, x, out):
    getattr(act, op)(out, x)
    ref = reference(op, x.cpu())
    err = ((out.cpu().double() - ref).abs() / ref.abs().clamp_min(1.0)).max().item()
    assert err <= TOL[x.dtype], f"{op} {x.dtype} shape {tuple(x.shape)}: error {err:.3g} > {TOL[x.dtype]}"


def test_loaded_variant_is_the_ascend_kernel(act):
    variant = Path(act.__file__).parent
    if DEVICE == "cpu":
        twin = json.loads((variant / "metadata.json").read_text())["provenance"]["twin"]
        assert twin["backend"] == "cann" and twin["soc"] == SOC
    else:
        assert "_cann_" in (variant / "_ops.py").read_text(), "kernels picked a non-cann variant on an NPU machine"


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
@pytest.mark.parametrize("op", GATED + UNARY)
def test_op_against_float64(act, op, dtype):
    torch.manual_seed(0)
    for d in SIZES:
        width = 2 * d if op in GATED else d
        x = (3 * torch.randn(5, 3, width)).to(dtype).to(DEVICE)  # three row-blocks' worth of rows, 3-D
        check(act, op, x, x.new_empty(5, 3, d))


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
@pytest.mark.parametrize("op", ["silu_and_mul", "gelu_tanh_and_mul", "gelu", "gelu_quick"])
def test_strided_rows_leave_the_gaps_alone(act, op, dtype):
    d = 64 if M200 else 33
    width = 2 * d if op in GATED else d
    big = (3 * torch.randn(7, width + 32)).to(dtype).to(DEVICE)  # input rows width + 32 apart
    out_base = torch.zeros(7, d + 48, dtype=dtype, device=DEVICE)
    check(act, op, big[:, :width], out_base[:, :d])
    assert (out_base[:, d:] == 0).all(), f"{op} wrote past the end of an output row"
    check(act, op, big[::2, :width], big.new_empty(4, d))  # every other row


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
@pytest.mark.parametrize("op", UNARY)
def test_one_long_contiguous_input_spreads_over_blocks(act, op, dtype):
    x = (3 * torch.randn(37, 4112)).to(dtype).to(DEVICE)
    check(act, op, x, torch.empty_like(x))


def test_odd_gated_width_is_refused(act):
    with pytest.raises(RuntimeError, match="must be even"):
        act.silu_and_mul(torch.empty(4, 3, device=DEVICE), torch.randn(4, 7, device=DEVICE))


@pytest.mark.skipif(not M200, reason="Ascend310P (m200) only: other SoCs compute bfloat16")
def test_m200_refuses_bfloat16(act):
    with pytest.raises(RuntimeError, match="bfloat16 is not supported on Ascend310P"):
        act.gelu(torch.empty(4, 64, dtype=torch.bfloat16), torch.randn(4, 64).bfloat16())


@pytest.mark.skipif(not M200, reason="Ascend310P (m200) only: other SoCs pad partial 32-byte blocks")
def test_m200_refuses_partial_blocks(act):
    with pytest.raises(RuntimeError, match="multiples of 8"):
        act.silu_and_mul(torch.empty(4, 33), torch.randn(4, 66))
    base = torch.randn(4, 72)
    with pytest.raises(RuntimeError, match="32-byte"):
        act.silu(torch.empty(4, 64), base[:, 4:68])  # rows that start off a 32-byte boundary
