"""Correctness tests for the bundled example kernels in kernels_src/.

The kernels are built once per session by the ``built_kernels`` fixture
(tests/conftest.py): ``{"activation": Path, "rmsnorm": Path}``, each the
output directory holding the variant directories. They are loaded the way
users load them, through the ``kernels`` package, and compared with float64
references and with torch / transformers at the same dtype. The tests run on
CUDA when torch has it, otherwise on CPU.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

kernels = pytest.importorskip("kernels")

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
DTYPE_IDS = ["f32", "f16", "bf16"]

# (rtol, atol) against a float64 reference: the result is rounded once to the
# output dtype (half an ulp) on top of float32 math.
ACT_TOL = {
    torch.float32: (2e-6, 1e-6),
    torch.float16: (1e-3, 1e-6),
    torch.bfloat16: (8e-3, 1e-6),
}
# float32 GELU on CUDA is torch's 0.5 x (1 + erf(x / sqrt 2)) (erfc made the
# kernel compute-bound): for negative x, 1 + erff cancels, leaving erff's own
# error (a few ulp of 1) times 0.5 |x| (times the gate): allowed on top.
GELU_ERF_F32 = 2.0**-23
GELU_OPS = {"gelu", "gelu_and_mul"}
# RMSNorm rounds twice (normalized value, then times weight), as transformers.
NORM_TOL = {
    torch.float32: (1e-5, 1e-6),
    torch.float16: (2e-3, 1e-5),
    torch.bfloat16: (1.6e-2, 1e-4),
}
# Same-dtype comparisons against torch / transformers: one ulp for 16-bit
# types; float32 math libraries (erf, tanh, exp) differ by a few ulp.
ULP = {torch.float32: 1e-5, torch.float16: 9.8e-4, torch.bfloat16: 7.9e-3}
SAME_ATOL = {torch.float32: 1e-5, torch.float16: 1e-6, torch.bfloat16: 1e-6}
# RMSNorm vs transformers at the same dtype: a different float32 reduction
# order can move the normalized value by one ulp, and the weight multiply
# rounds again: allow two.
NORM_SAME_RTOL = {dt: 2 * u for dt, u in ULP.items()}

# Leading shape x last dimension; last dims include sizes not divisible by 8.
# (On CUDA these also reach every pack width: 16/8/4-byte and scalar.)
SHAPES = [(1, 1), (3, 6), (3, 7), (5, 36), (2, 5, 33), (4, 1000), (64, 40), (2, 4096), (1, 8, 520)]
# Long rows (several packs per thread, the CUDA kernels' multi-step and
# uncached paths) and many rows (the narrow-block launch).
ACT_SHAPES = SHAPES + [(2, 20000), (300, 64)]
# (5, 8): one 16-byte pack a row, one lane a row (short rows); (3, 16384): one wave of rows at 4 packs a thread.
NORM_SHAPES = SHAPES + [(5, 8), (3, 8192), (3, 16384), (2, 40000), (2, 10001), (300, 2048)]
# More rows than the CUDA kernel's persistent grid holds at once (its row loop and the prefetch of the next
# row run), with rows not a multiple of a block's rows: q_norm-like 128-wide rows (lane groups), 1024 and
# 4096 wide (one block a row), 14336 (512 threads a row).
NORM_MANY_ROWS = [(70001, 128), (20003, 1024), (2999, 4096), (1201, 14336)]


@pytest.fixture(scope="session")
def built_kernels(tmp_path_factory) -> dict:
    """As conftest's: kernels_src/{activation,rmsnorm} built for this host. With KB_PREBUILT=DIR (holding
    activation/, rmsnorm/): builds made beforehand (scripts/gpu_verify.sh builds once, for the GPU at hand)."""
    pre = os.environ.get("KB_PREBUILT")
    if pre:
        return {name: Path(pre) / name for name in ("activation", "rmsnorm")}
    from conftest import KERNELS_SRC, build_project

    out = tmp_path_factory.mktemp("kernels_src_build")
    for name in ("activation", "rmsnorm"):
        build_project(KERNELS_SRC / name, out / name)
    return {name: out / name for name in ("activation", "rmsnorm")}


def _ids(shapes):
    return ["x".join(map(str, s)) for s in shapes]


# --- float64 references -----------------------------------------------------
def _silu(x):
    return x * torch.sigmoid(x)


def _gelu(x):
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def _gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def _gelu_fast(x):
    return 0.5 * x * (1.0 + torch.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)))


def _gelu_quick(x):
    return x * torch.sigmoid(1.702 * x)


UNARY = {
    "silu": _silu,
    "gelu": _gelu,
    "gelu_tanh": _gelu_tanh,
    "gelu_fast": _gelu_fast,
    "gelu_quick": _gelu_quick,
}
GATED = {"silu_and_mul": _silu, "gelu_and_mul": _gelu, "gelu_tanh_and_mul": _gelu_tanh}


def _rms_ref64(x, weight, eps):
    x64 = x.double()
    return x64 * torch.rsqrt(x64.pow(2).mean(-1, keepdim=True) + eps) * weight.double()


def _assert_act_close(out, ref, op, dtype, x, gate=None):
    """assert_close with ACT_TOL, plus the erf-form allowance for float32 GELU (see GELU_ERF_F32)."""
    rtol, atol = ACT_TOL[dtype]
    if dtype != torch.float32 or op not in GELU_OPS:
        torch.testing.assert_close(out.double(), ref, rtol=rtol, atol=atol)
        return
    scale = x.double().abs() * (gate.double().abs() if gate is not None else 1.0)
    allowed = atol + rtol * ref.abs() + GELU_ERF_F32 * scale
    err = (out.double() - ref).abs()
    assert torch.equal(torch.isnan(out), torch.isnan(ref)), f"{op}: NaN positions differ"
    bad = err > allowed
    assert not bad.any(), (f"{op}: {int(bad.sum())} elements off; worst error {float(err[bad].max()):.3g} "
                           f"(allowed {float(allowed[bad].min()):.3g})")


def _poisoned(shape, dtype):
    return torch.full(shape, float("nan"), dtype=dtype, device=DEVICE)


def _randn(*shape, dtype, scale=3.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g) * scale).to(dtype=dtype, device=DEVICE)


# --- fixtures ----------------------------------------------------------------
@pytest.fixture(scope="module")
def activation(built_kernels):
    return kernels.get_local_kernel(Path(built_kernels["activation"]))


@pytest.fixture(scope="module")
def rmsnorm(built_kernels):
    return kernels.get_local_kernel(Path(built_kernels["rmsnorm"]))


# --- activation ops ----------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape", ACT_SHAPES, ids=_ids(ACT_SHAPES))
@pytest.mark.parametrize("op", sorted(GATED))
def test_gated_matches_reference(activation, op, shape, dtype):
    d = shape[-1]
    x = _randn(*shape[:-1], 2 * d, dtype=dtype)
    x_before = x.clone()
    out = _poisoned(shape, dtype)
    ret = getattr(activation, op)(out, x)
    assert ret is out
    ref = GATED[op](x[..., :d].double()) * x[..., d:].double()
    _assert_act_close(out, ref, op, dtype, x[..., :d], x[..., d:])
    assert torch.equal(x, x_before), "input was modified"


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape", ACT_SHAPES + [(17,)], ids=_ids(ACT_SHAPES + [(17,)]))
@pytest.mark.parametrize("op", sorted(UNARY))
def test_unary_matches_reference(activation, op, shape, dtype):
    x = _randn(*shape, dtype=dtype)
    out = _poisoned(shape, dtype)
    ret = getattr(activation, op)(out, x)
    assert ret is out
    _assert_act_close(out, UNARY[op](x.double()), op, dtype, x)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_activations_match_torch_same_dtype(activation, dtype):
    x = _randn(8, 2 * 300, dtype=dtype, seed=1)
    d = 300
    torch_impls = {
        "silu": F.silu,
        "gelu": F.gelu,
        "gelu_tanh": lambda t: F.gelu(t, approximate="tanh"),
        "gelu_quick": lambda t: t * torch.sigmoid(1.702 * t),
    }
    for op, fn in torch_impls.items():
        out = torch.empty_like(x)
        getattr(activation, op)(out, x)
        expected = fn(x.float()).to(dtype)
        torch.testing.assert_close(out, expected, rtol=ULP[dtype], atol=SAME_ATOL[dtype], msg=lambda m, op=op: f"{op}: {m}")
    out = x.new_empty(8, d)
    activation.silu_and_mul(out, x)
    expected = (F.silu(x[:, :d].float()) * x[:, d:].float()).to(dtype)
    torch.testing.assert_close(out, expected, rtol=ULP[dtype], atol=SAME_ATOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_activation_strided_rows(activation, dtype):
    # Rows with a stride larger than their length (a slice of a wider tensor)
    # are supported for input and output.
    d = 33
    big = _randn(6, 2 * d + 10, dtype=dtype)
    x = big[:, 3 : 3 + 2 * d]
    out_big = _poisoned((6, d + 5), dtype)
    out = out_big[:, :d]
    activation.gelu_and_mul(out, x)
    ref = _gelu(x[:, :d].double()) * x[:, d:].double()
    _assert_act_close(out, ref, "gelu_and_mul", dtype, x[:, :d], x[:, d:])
    rtol, atol = ACT_TOL[dtype]
    assert torch.isnan(out_big[:, d:]).all(), "wrote outside the output view"

    xs = big[::2, 1:40]  # strided rows, misaligned start
    o = torch.empty_like(xs)
    activation.gelu_fast(o, xs)
    torch.testing.assert_close(o.double(), _gelu_fast(xs.double()), rtol=rtol, atol=atol)


def test_activation_non_contiguous_last_dim_raises(activation):
    x = _randn(16, 8, dtype=torch.float32).t()  # last-dim stride 8
    with pytest.raises(RuntimeError, match="contiguous"):
        activation.silu(torch.empty_like(x), x)
    with pytest.raises(RuntimeError, match="contiguous"):
        activation.silu_and_mul(x.new_empty(8, 8), x)
    # A contiguous copy works.
    xc = x.contiguous()
    out = torch.empty_like(xc)
    activation.silu(out, xc)
    torch.testing.assert_close(out.double(), _silu(xc.double()), rtol=2e-6, atol=1e-6)


def test_activation_input_errors(activation):
    x = _randn(4, 16, dtype=torch.float32)
    with pytest.raises(RuntimeError, match="same dtype"):
        activation.silu_and_mul(x.new_empty(4, 8).half(), x)
    with pytest.raises(RuntimeError, match="shape"):
        activation.silu_and_mul(x.new_empty(4, 16), x)
    with pytest.raises(RuntimeError, match="even"):
        activation.gelu_and_mul(x.new_empty(4, 7), x[:, :15])
    with pytest.raises(RuntimeError, match="shape"):
        activation.gelu(x.new_empty(4, 15), x)
    with pytest.raises(RuntimeError, match="float32, float16 or bfloat16"):
        activation.gelu(x.double().clone(), x.double())


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_activation_nan_inf(activation, dtype):
    specials = [float("nan"), float("inf"), -float("inf"), 0.0, -0.0, 1.0, -1.0, 30.0, -30.0, 100.0, -100.0]
    v = torch.tensor(specials, dtype=dtype, device=DEVICE)
    is_nan = torch.isnan(v)
    pos_inf = torch.isposinf(v)
    neg_inf = torch.isneginf(v)
    finite = torch.isfinite(v)
    rtol, atol = ACT_TOL[dtype]
    for op, ref in UNARY.items():
        out = torch.empty_like(v)
        getattr(activation, op)(out, v)
        assert torch.isnan(out[is_nan]).all(), f"{op}: NaN did not propagate"
        assert torch.isposinf(out[pos_inf]).all(), f"{op}(+inf) should be +inf, got {out[pos_inf]}"
        # torch gives NaN for act(-inf) (-inf * 0); so do we.
        assert torch.isnan(out[neg_inf]).all(), f"{op}(-inf) should be NaN like torch, got {out[neg_inf]}"
        torch.testing.assert_close(out[finite].double(), ref(v[finite].double()), rtol=rtol, atol=atol)
    # Gated: NaN in either half poisons that output element.
    gate = torch.tensor([float("nan"), 1.0, float("inf"), 2.0], dtype=dtype, device=DEVICE)
    up = torch.tensor([1.0, float("nan"), 2.0, float("inf")], dtype=dtype, device=DEVICE)
    out = gate.new_empty(4)
    activation.silu_and_mul(out, torch.cat([gate, up]))
    expected = F.silu(gate.float()) * up.float()
    assert torch.equal(torch.isnan(out), torch.isnan(expected))
    assert torch.equal(torch.isinf(out), torch.isinf(expected))


def test_activation_empty(activation):
    """Zero tokens is a valid batch (an empty prefill chunk): the ops must launch nothing, not fail
    (a CUDA launch with a zero grid is an error), and leave outputs of the right, empty shape."""
    x = torch.empty(0, 8, device=DEVICE)
    out = x.new_empty(0, 4)
    assert activation.silu_and_mul(out, x) is out
    y = torch.empty_like(x)
    assert activation.gelu(y, x) is y
    if DEVICE == "cuda":
        torch.cuda.synchronize()  # a bad launch surfaces here
    assert out.shape == (0, 4) and y.shape == (0, 8)
    assert torch.equal(out, F.silu(x[:, :4]) * x[:, 4:]) and torch.equal(y, F.gelu(x))


def test_activation_torch_compile(activation):
    def fn(x):
        out = x.new_empty(x.shape[:-1] + (x.shape[-1] // 2,))
        activation.ops.silu_and_mul(out, x)
        y = torch.empty_like(out)
        activation.ops.gelu_fast(y, out)
        return y + 1

    x = _randn(4, 64, dtype=torch.float32)
    compiled = torch.compile(fn, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(x), fn(x))


# --- activation layers -------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_activation_layers(activation, dtype):
    from transformers.activations import FastGELUActivation, QuickGELUActivation

    layers = activation.layers
    x = _randn(5, 2 * 77, dtype=dtype, seed=2)
    d = 77
    a, b = x[..., :d].float(), x[..., d:].float()
    gated = {
        "SiluAndMul": F.silu(a) * b,
        "GeluAndMul": F.gelu(a) * b,
        "GeluTanhAndMul": F.gelu(a, approximate="tanh") * b,
    }
    xf = x.float()
    unary = {
        "Silu": F.silu(xf),
        "Gelu": F.gelu(xf),
        "GeluTanh": F.gelu(xf, approximate="tanh"),
        "GeluFast": FastGELUActivation()(xf),
        "FastGELU": FastGELUActivation()(xf),
        "GeluQuick": QuickGELUActivation()(xf),
        "QuickGELU": QuickGELUActivation()(xf),
    }
    for name, expected in {**gated, **unary}.items():
        layer = getattr(layers, name)
        assert issubclass(layer, nn.Module)
        assert layer.__init__ is nn.Module.__init__, f"{name} must not define __init__"
        assert layer.has_backward is False and layer.can_torch_compile is True
        y = layer()(x)
        assert y.dtype == dtype and y.shape == expected.shape, name
        torch.testing.assert_close(y, expected.to(dtype), rtol=ULP[dtype], atol=SAME_ATOL[dtype], msg=lambda m, name=name: f"{name}: {m}")


def test_activation_layers_non_contiguous_and_compile(activation):
    layers = activation.layers
    x = _randn(40, 6, dtype=torch.float32).t()  # non-contiguous: the layer copies it
    torch.testing.assert_close(layers.GeluFast()(x).double(), _gelu_fast(x.double()), rtol=2e-6, atol=1e-6)
    y = layers.SiluAndMul()(x)
    torch.testing.assert_close(y.double(), (_silu(x[:, :20].double()) * x[:, 20:].double()), rtol=2e-6, atol=1e-6)
    compiled = torch.compile(layers.SiluAndMul(), backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(x.contiguous()), y)


def test_activation_kernelize(built_kernels):
    from transformers.activations import FastGELUActivation, GELUTanh, QuickGELUActivation, SiLUActivation

    path = Path(built_kernels["activation"])
    model = nn.Sequential(FastGELUActivation(), QuickGELUActivation(), SiLUActivation(), GELUTanh()).to(DEVICE)
    x = _randn(3, 50, dtype=torch.float32)
    expected = model(x)
    mapping = {
        name: {DEVICE: kernels.LocalLayerRepository(path, layer_name=layer)}
        for name, layer in [("FastGELU", "FastGELU"), ("QuickGELU", "QuickGELU"), ("SiLU", "Silu"), ("GeluTanh", "GeluTanh")]
    }
    with kernels.use_kernel_mapping(mapping, inherit_mapping=False):
        model = kernels.kernelize(model, mode=kernels.Mode.INFERENCE, device=DEVICE, use_fallback=False)
    for m in model:
        assert m.forward.__func__.__module__.endswith(".layers"), f"{type(m).__name__} was not kernelized"
    torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-6)


# --- rmsnorm -----------------------------------------------------------------
def _llama_norm(weight, eps):
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    norm = LlamaRMSNorm(weight.shape[0], eps=eps).to(device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        norm.weight.copy_(weight)
    return norm


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape", NORM_SHAPES + NORM_MANY_ROWS, ids=_ids(NORM_SHAPES + NORM_MANY_ROWS))
def test_rms_norm_matches_reference(rmsnorm, shape, dtype):
    eps = 1e-6
    x = _randn(*shape, dtype=dtype, scale=2.0)
    w = _randn(shape[-1], dtype=dtype, scale=1.0, seed=3)
    out = _poisoned(shape, dtype)
    assert rmsnorm.rms_norm(out, x, w, eps) is out
    rtol, atol = NORM_TOL[dtype]
    torch.testing.assert_close(out.double(), _rms_ref64(x, w, eps), rtol=rtol, atol=atol)
    with torch.no_grad():
        expected = _llama_norm(w, eps)(x)
    torch.testing.assert_close(out, expected, rtol=NORM_SAME_RTOL[dtype], atol=SAME_ATOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape", [(3, 7), (4, 1000), (2, 4096), (1, 8, 520), (2, 40000), (300, 2048),
                                   (70001, 128), (2999, 4096), (1201, 14336)], ids=str)
def test_fused_add_rms_norm(rmsnorm, shape, dtype):
    eps = 1e-5
    x = _randn(*shape, dtype=dtype, scale=2.0, seed=4)
    res = _randn(*shape, dtype=dtype, scale=2.0, seed=5)
    w = _randn(shape[-1], dtype=dtype, scale=1.0, seed=6)
    out, res_out = _poisoned(shape, dtype), _poisoned(shape, dtype)
    rmsnorm.fused_add_rms_norm(out, res_out, x, res, w, eps)
    summed = x + res
    assert torch.equal(res_out, summed), "residual_out != x + residual in the input dtype"
    with torch.no_grad():
        expected = _llama_norm(w, eps)(summed)
    torch.testing.assert_close(out, expected, rtol=NORM_SAME_RTOL[dtype], atol=SAME_ATOL[dtype])
    rtol, atol = NORM_TOL[dtype]
    torch.testing.assert_close(out.double(), _rms_ref64(summed, w, eps), rtol=rtol, atol=atol)

    # In place: out=x, residual_out=residual.
    xi, ri = x.clone(), res.clone()
    rmsnorm.fused_add_rms_norm(xi, ri, xi, ri, w, eps)
    assert torch.equal(ri, res_out)
    assert torch.equal(xi, out)


# CUDA: the lean one-row-per-block kernel (rms_norm_row_kernel) at 1, 2 and 4 packs a thread for one wave of
# rows, fused rows filling one to three waves at 1 and 2, power-of-two widths (mean by a multiply) and others
# (3072, 12288: a division); through it, rows with a stride wider than the row and in-place calls. On the CPU
# build the same cases check the reference path.
ROW_KERNEL_SHAPES = [(16, 4096), (64, 3072), (16, 8192), (8, 12288), (8, 16384), (300, 4096), (600, 8192)]


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape", ROW_KERNEL_SHAPES, ids=str)
@pytest.mark.parametrize("fused", [False, True], ids=["rms", "fused"])
def test_rms_norm_row_kernel_paths(rmsnorm, shape, dtype, fused):
    rows, h = shape
    eps = 1e-6
    w = _randn(h, dtype=dtype, scale=1.0, seed=22)
    wide = _randn(rows, h + 64, dtype=dtype, scale=2.0, seed=23)
    rwide = _randn(rows, h + 128, dtype=dtype, scale=2.0, seed=24)
    rtol, atol = NORM_TOL[dtype]
    for x, r in ((wide[:, :h].contiguous(), rwide[:, :h].contiguous()), (wide[:, :h], rwide[:, 64:64 + h])):
        if fused:
            out, res_out = _poisoned(shape, dtype), _poisoned(shape, dtype)
            rmsnorm.fused_add_rms_norm(out, res_out, x, r, w, eps)
            summed = x + r
            assert torch.equal(res_out, summed), "residual_out != x + residual in the input dtype"
        else:
            out = _poisoned(shape, dtype)
            rmsnorm.rms_norm(out, x, w, eps)
            summed = x
        torch.testing.assert_close(out.double(), _rms_ref64(summed, w, eps), rtol=rtol, atol=atol)
        with torch.no_grad():
            expected = _llama_norm(w, eps)(summed)
        torch.testing.assert_close(out, expected, rtol=NORM_SAME_RTOL[dtype], atol=SAME_ATOL[dtype])
    # in place, on strided rows (the views of the last pass, copied)
    xi, ri = wide.clone()[:, :h], rwide.clone()[:, 64:64 + h]
    if fused:
        rmsnorm.fused_add_rms_norm(xi, ri, xi, ri, w, eps)
        assert torch.equal(ri, res_out)
    else:
        rmsnorm.rms_norm(xi, xi, w, eps)
    assert torch.equal(xi, out)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape", [(16, 4096), (300, 4096)], ids=str)
def test_rms_norm_row_kernel_nan_inf(rmsnorm, shape, dtype):
    """NaN in a row poisons that row only (an Inf makes its own element NaN, the rest 0), on the lean row
    kernel's launches (one wave, fused rows)."""
    rows, h = shape
    x = _randn(rows, h, dtype=dtype, seed=25)
    x[1, 5] = float("nan")
    x[2, 700] = float("inf")
    x[3, h - 1] = -float("inf")
    r = _randn(rows, h, dtype=dtype, seed=26)
    w = _randn(h, dtype=dtype, scale=1.0, seed=27)
    out = torch.empty_like(x)
    rmsnorm.rms_norm(out, x, w, 1e-6)
    fout, fres = torch.empty_like(x), torch.empty_like(x)
    rmsnorm.fused_add_rms_norm(fout, fres, x, r, w, 1e-6)
    with torch.no_grad():
        expected = _llama_norm(w, 1e-6)(x)
        fexpected = _llama_norm(w, 1e-6)(x + r)
    for got, exp in ((out, expected), (fout, fexpected)):
        assert torch.equal(torch.isnan(got), torch.isnan(exp))
        assert torch.isnan(got[1]).all() and torch.isnan(got[2, 700]) and torch.isnan(got[3, h - 1])
        assert not torch.isnan(got[0]).any() and not torch.isnan(got[4:]).any()
        torch.testing.assert_close(got, exp, rtol=NORM_SAME_RTOL[dtype], atol=SAME_ATOL[dtype], equal_nan=True)


def test_rms_norm_eps_and_in_place(rmsnorm):
    x = _randn(4, 64, dtype=torch.float32, scale=0.01)
    w = torch.ones(64, device=DEVICE)
    for eps in (0.0, 1e-6, 1.0):
        out = torch.empty_like(x)
        rmsnorm.rms_norm(out, x, w, eps)
        torch.testing.assert_close(out.double(), _rms_ref64(x, w, eps), rtol=1e-5, atol=1e-7)
    xi = x.clone()
    rmsnorm.rms_norm(xi, xi, w, 1e-6)
    torch.testing.assert_close(xi.double(), _rms_ref64(x, w, 1e-6), rtol=1e-5, atol=1e-7)
    # in place over many rows (the CUDA kernel prefetches a block's next row before writing this one)
    # and (1201, 14336): the row is staged in shared memory on CUDA
    for shape in ((70001, 128), (2999, 4096), (1201, 14336)):
        x = _randn(*shape, dtype=torch.bfloat16, scale=2.0, seed=11)
        w = _randn(shape[-1], dtype=torch.bfloat16, scale=1.0, seed=12)
        out = torch.empty_like(x)
        rmsnorm.rms_norm(out, x, w, 1e-6)
        xi = x.clone()
        rmsnorm.rms_norm(xi, xi, w, 1e-6)
        assert torch.equal(xi, out)


def _every_device() -> list[str]:
    return [f"cuda:{i}" for i in range(torch.cuda.device_count())] if DEVICE == "cuda" else ["cpu"]


def test_rms_norm_rows_over_48kb_on_every_device(rmsnorm):
    """float32 rows of 14336 (56 KB: the staged kernel asks for more than the default 48 KB of shared memory)
    on every visible GPU in turn, plain and fused. The shared-memory limit is an attribute of the kernel on
    each device, so the first launch on the second GPU has to raise it there too."""
    h, eps = 14336, 1e-6
    for dev in _every_device():
        sms = torch.cuda.get_device_properties(dev).multi_processor_count if dev != "cpu" else 4
        shape = (2 * sms + 3, h)
        x = _randn(*shape, dtype=torch.float32, seed=31).to(dev)
        r = _randn(*shape, dtype=torch.float32, seed=32).to(dev)
        w = _randn(h, dtype=torch.float32, scale=1.0, seed=33).to(dev)
        rtol, atol = NORM_TOL[torch.float32]
        out = torch.full_like(x, float("nan"))
        rmsnorm.rms_norm(out, x, w, eps)
        torch.testing.assert_close(out.double(), _rms_ref64(x, w, eps), rtol=rtol, atol=atol, msg=dev)
        out, res_out = torch.full_like(x, float("nan")), torch.full_like(x, float("nan"))
        rmsnorm.fused_add_rms_norm(out, res_out, x, r, w, eps)
        assert torch.equal(res_out, x + r), dev
        torch.testing.assert_close(out.double(), _rms_ref64(x + r, w, eps), rtol=rtol, atol=atol, msg=dev)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_rms_norm_strided_rows(rmsnorm, dtype):
    big = _randn(8, 50, dtype=dtype, scale=2.0)
    x = big[::2, 3:36]  # strided rows, misaligned start, odd width
    w = _randn(33, dtype=dtype, scale=1.0, seed=7)
    out = torch.empty_like(x)
    rmsnorm.rms_norm(out, x, w, 1e-6)
    rtol, atol = NORM_TOL[dtype]
    torch.testing.assert_close(out.double(), _rms_ref64(x, w, 1e-6), rtol=rtol, atol=atol)


def test_rms_norm_errors(rmsnorm):
    x = _randn(4, 16, dtype=torch.float32)
    w = torch.ones(16, device=DEVICE)
    with pytest.raises(RuntimeError, match="contiguous"):
        xt = _randn(16, 4, dtype=torch.float32).t()
        rmsnorm.rms_norm(torch.empty_like(xt), xt, w, 1e-6)
    with pytest.raises(RuntimeError, match="weight must have the same dtype"):
        rmsnorm.rms_norm(torch.empty_like(x), x, w.half(), 1e-6)
    with pytest.raises(RuntimeError, match="weight must be 1-D"):
        rmsnorm.rms_norm(torch.empty_like(x), x, torch.ones(15, device=DEVICE), 1e-6)
    with pytest.raises(RuntimeError, match="same shape"):
        rmsnorm.rms_norm(x.new_empty(4, 8), x, w, 1e-6)
    with pytest.raises(RuntimeError, match="same dtype"):
        rmsnorm.rms_norm(x.new_empty(4, 16).bfloat16(), x, w, 1e-6)
    with pytest.raises(RuntimeError, match="residual must have the same shape"):
        rmsnorm.fused_add_rms_norm(torch.empty_like(x), torch.empty_like(x), x, x[:2], w, 1e-6)
    with pytest.raises(RuntimeError, match="must not share memory"):
        o = torch.empty_like(x)
        rmsnorm.fused_add_rms_norm(o, o, x, x.clone(), w, 1e-6)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_rms_norm_nan_inf(rmsnorm, dtype):
    x = _randn(4, 40, dtype=dtype)
    x[1, 5] = float("nan")
    x[2, 7] = float("inf")
    x[3, 9] = -float("inf")
    w = _randn(40, dtype=dtype, scale=1.0, seed=8)
    out = torch.empty_like(x)
    rmsnorm.rms_norm(out, x, w, 1e-6)
    with torch.no_grad():
        expected = _llama_norm(w, 1e-6)(x)
    assert torch.equal(torch.isnan(out), torch.isnan(expected))
    assert torch.isnan(out[1]).all()
    torch.testing.assert_close(out, expected, rtol=NORM_SAME_RTOL[dtype], atol=SAME_ATOL[dtype], equal_nan=True)


def test_rms_norm_torch_compile(rmsnorm):
    def fn(x, r, w):
        out, res_out = torch.empty_like(x), torch.empty_like(x)
        rmsnorm.ops.fused_add_rms_norm(out, res_out, x, r, w, 1e-6)
        y = torch.empty_like(out)
        rmsnorm.ops.rms_norm(y, out, w, 1e-6)
        return y * 2, res_out

    x, r = _randn(4, 64, dtype=torch.float32), _randn(4, 64, dtype=torch.float32, seed=1)
    w = _randn(64, dtype=torch.float32, seed=2)
    compiled = torch.compile(fn, backend="aot_eager", fullgraph=True)
    for got, want in zip(compiled(x, r, w), fn(x, r, w)):
        torch.testing.assert_close(got, want)


def test_rms_norm_first_launch_in_cuda_graph(built_kernels):
    """The shared-memory staged rows (float32 rows of 14336 raise the CUDA kernel's dynamic shared-memory limit on
    their first launch) work when that first launch is inside a CUDA graph capture: a fresh process. On the CPU
    the same calls run plainly (the process and the checks are the same)."""
    code = textwrap.dedent(
        f"""
        import torch, kernels
        from pathlib import Path
        dev = {DEVICE!r}
        k = kernels.get_local_kernel(Path({str(built_kernels["rmsnorm"])!r}))
        for dtype in (torch.float32, torch.bfloat16):
            x = torch.randn(1000, 14336, device=dev, dtype=dtype)
            r = torch.randn_like(x)
            w = torch.randn(14336, device=dev, dtype=dtype)
            out, o2, ro = torch.empty_like(x), torch.empty_like(x), torch.empty_like(x)
            def calls():
                k.ops.rms_norm(out, x, w, 1e-6)
                k.ops.fused_add_rms_norm(o2, ro, x, r, w, 1e-6)
            if dev == "cuda":
                g = torch.cuda.CUDAGraph()
                with torch.cuda.graph(g):
                    calls()
                g.replay()
                torch.cuda.synchronize()
            else:
                calls()
            ref, ref2 = torch.empty_like(x), torch.empty_like(x)
            k.ops.rms_norm(ref, x, w, 1e-6)
            k.ops.rms_norm(ref2, x + r, w, 1e-6)
            assert torch.equal(out, ref), dtype
            assert torch.equal(ro, x + r), dtype
            torch.testing.assert_close(o2, ref2, rtol=1.6e-2 if dtype == torch.bfloat16 else 1e-5, atol=1e-5)
        print("ok")
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_rmsnorm_layer_matches_llama(rmsnorm, dtype):
    layer = rmsnorm.layers.RMSNorm
    assert layer.__init__ is nn.Module.__init__
    assert layer.has_backward is False and layer.can_torch_compile is True
    w = _randn(520, dtype=dtype, scale=1.0, seed=9)
    host = _llama_norm(w, 1e-5)
    x = _randn(2, 3, 520, dtype=dtype, scale=2.0, seed=10)
    with torch.no_grad():
        expected = host(x)
        got = layer.forward(host, x)
    assert got.dtype == expected.dtype
    torch.testing.assert_close(got, expected, rtol=NORM_SAME_RTOL[dtype], atol=SAME_ATOL[dtype])


def test_rmsnorm_layer_mixed_dtype_falls_back(rmsnorm):
    # float32 weight with bfloat16 activations: transformers promotes to
    # float32; the layer reproduces that instead of calling the kernel.
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    host = LlamaRMSNorm(64, eps=1e-6).to(DEVICE)
    with torch.no_grad():
        host.weight.normal_()
        x = _randn(3, 64, dtype=torch.bfloat16)
        expected = host(x)
        got = rmsnorm.layers.RMSNorm.forward(host, x)
    assert got.dtype == expected.dtype == torch.float32
    torch.testing.assert_close(got, expected)


def test_rmsnorm_kernelize(built_kernels):
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    path = Path(built_kernels["rmsnorm"])
    model = nn.Sequential(LlamaRMSNorm(96, eps=1e-6), nn.Linear(96, 96), LlamaRMSNorm(96, eps=1e-5)).to(DEVICE)
    with torch.no_grad():
        for m in (model[0], model[2]):
            m.weight.normal_()
        x = _randn(5, 96, dtype=torch.float32)
        expected = model(x)
    mapping = {"RMSNorm": {DEVICE: kernels.LocalLayerRepository(path, layer_name="RMSNorm")}}
    with kernels.use_kernel_mapping(mapping, inherit_mapping=False):
        model = kernels.kernelize(model, mode=kernels.Mode.INFERENCE, device=DEVICE, use_fallback=False)
    assert model[0].forward.__func__.__qualname__ == "RMSNorm.forward"
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-6)


# --- loading through LOCAL_KERNELS + get_kernel -------------------------------
def test_get_kernel_with_local_kernels_override(built_kernels, tmp_path):
    script = textwrap.dedent(
        """
        import torch, kernels
        act = kernels.get_kernel("kernel-builder/activation", version=1)
        x = torch.randn(4, 10, device=DEVICE)
        out = x.new_empty(4, 5)
        act.silu_and_mul(out, x)
        ref = torch.nn.functional.silu(x[:, :5]) * x[:, 5:]
        torch.testing.assert_close(out, ref)
        assert hasattr(act.layers, "SiluAndMul")
        print("LOADED", act.__name__)
        """
    ).replace("DEVICE", repr(DEVICE))
    env = dict(os.environ)
    env.update(
        LOCAL_KERNELS=f"kernel-builder/activation={Path(built_kernels['activation']).resolve()}",
        HF_HUB_OFFLINE="1",
        HF_HOME=str(tmp_path / "hf-home"),
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "LOADED _activation_" in proc.stdout, proc.stdout + proc.stderr
