"""Correctness tests for kernels_src/rotary (rotary position embedding).

The kernel is built once per module with the real CLI (conftest's
``build_project``) and loaded through the ``kernels`` package. Results are
compared with a float64 reference and with transformers' own
``apply_rotary_pos_emb`` (models/llama) at the same dtype, and the layer is
exercised through transformers' ``"rotary_pos_emb"`` hook with
``kernels.kernelize``. The tests run on CUDA when torch has it, otherwise on
CPU.
"""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path

import pytest
import torch

from conftest import KERNELS_SRC, build_project

kernels = pytest.importorskip("kernels")
modeling_llama = pytest.importorskip("transformers.models.llama.modeling_llama")

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
DTYPE_IDS = ["f32", "f16", "bf16"]
# vs float64: float32 math, one rounding to the output dtype (half an ulp).
REF_TOL = {torch.float32: (2e-6, 2e-6), torch.float16: (5e-4, 1e-5), torch.bfloat16: (4e-3, 1e-4)}
# vs transformers at the same dtype: it rounds q*cos, rotate_half(q)*sin and
# their sum separately, so allow a few ulp of the terms (|terms| <= ~5 here).
ULP = {torch.float32: 1.2e-7, torch.float16: 9.8e-4, torch.bfloat16: 7.9e-3}


@pytest.fixture(scope="module")
def rotary_dir(tmp_path_factory) -> Path:
    # KB_PREBUILT=DIR (holding rotary/): test builds made beforehand (scripts/gpu_verify.sh builds once,
    # for the GPU at hand only) instead of a full build here.
    pre = os.environ.get("KB_PREBUILT")
    if pre:
        return Path(pre) / "rotary"
    out = tmp_path_factory.mktemp("rotary_build") / "rotary"
    build_project(KERNELS_SRC / "rotary", out)
    return out


@pytest.fixture(scope="module")
def rotary(rotary_dir):
    return kernels.get_local_kernel(rotary_dir)


def test_imported_twice(rotary_dir):
    """The same build imported under a second module name (transformers' KernelConfig after kernels' kernelize
    did) loads: the op namespace and its fake impls are shared, and the second module's ops run."""
    import importlib.util

    variant = next(p for p in Path(rotary_dir).iterdir() if (p / "__init__.py").is_file()
                   and (DEVICE != "cuda" or "-cu" in p.name))
    mods = []
    for i in range(2):
        name = f"kb_rotary_twice_{i}"
        spec = importlib.util.spec_from_file_location(name, variant / "__init__.py",
                                                      submodule_search_locations=[str(variant)])
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
        mods.append(mod)
    q, k = _qk(1, 4, 2, 5, 16, torch.float32)
    cos, sin = _cos_sin(1, 5, 16, torch.float32)
    a = mods[0].apply_rotary_pos_emb(q, k, cos, sin)
    b = mods[1].apply_rotary_pos_emb(q, k, cos, sin)
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _qk(batch, q_heads, k_heads, seq, head_dim, dtype, seed=0, transposed=True):
    """q/k as transformers makes them: the transpose of a [b, s, h, d] projection."""
    g = _gen(seed)
    if transposed:
        q = torch.randn(batch, seq, q_heads, head_dim, generator=g).to(dtype=dtype, device=DEVICE).transpose(1, 2)
        k = torch.randn(batch, seq, k_heads, head_dim, generator=g).to(dtype=dtype, device=DEVICE).transpose(1, 2)
    else:
        q = torch.randn(batch, q_heads, seq, head_dim, generator=g).to(dtype=dtype, device=DEVICE)
        k = torch.randn(batch, k_heads, seq, head_dim, generator=g).to(dtype=dtype, device=DEVICE)
    return q, k


def _cos_sin(batch, seq, head_dim, dtype, seed=1, scale=1.0):
    """cos/sin as LlamaRotaryEmbedding makes them (random positions), [batch, seq, head_dim]."""
    g = _gen(seed)
    inv_freq = 1.0 / (10000.0 ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    pos = torch.randint(0, 4096, (batch, seq), generator=g).double()
    freqs = pos[..., None] * inv_freq
    emb = torch.cat((freqs, freqs), dim=-1)
    cos = (emb.cos() * scale).to(dtype=dtype, device=DEVICE)
    sin = (emb.sin() * scale).to(dtype=dtype, device=DEVICE)
    return cos, sin


def _ref64(x, cos, sin):
    x, cos, sin = x.double(), cos.double().unsqueeze(1), sin.double().unsqueeze(1)
    h = x.shape[-1] // 2
    rot = torch.cat((-x[..., h:], x[..., :h]), dim=-1)
    return x * cos + rot * sin


def _transformers(q, k, cos, sin):
    # Call the undecorated math: the decorated function is an nn.Module whose
    # forward a kernelize call could have replaced.
    fn = modeling_llama.apply_rotary_pos_emb
    return type(fn).forward(fn, q, k, cos, sin)


def _check(q, k, cos, sin, q_out, k_out):
    dtype = q.dtype
    rtol, atol = REF_TOL[dtype]
    torch.testing.assert_close(q_out.double(), _ref64(q, cos, sin), rtol=rtol, atol=atol)
    torch.testing.assert_close(k_out.double(), _ref64(k, cos, sin), rtol=rtol, atol=atol)
    tq, tk = _transformers(q, k, cos, sin)
    same_atol = 4 * ULP[dtype] * max(1.0, q.abs().max().item(), k.abs().max().item())
    torch.testing.assert_close(q_out, tq, rtol=2 * ULP[dtype], atol=same_atol)
    torch.testing.assert_close(k_out, tk, rtol=2 * ULP[dtype], atol=same_atol)


# (batch, q_heads, k_heads, seq, head_dim): GQA and MHA, decode (seq 1),
# head_dim with odd halves (scalar packs on CUDA), large head_dim (the
# uncached CUDA path), many tokens (grid-stride loop).
SHAPES = [
    (1, 1, 1, 1, 2),
    (2, 4, 4, 3, 8),
    (2, 8, 2, 5, 64),
    (1, 32, 8, 1, 128),
    (3, 6, 2, 17, 6),
    (2, 5, 1, 9, 10),
    (1, 4, 4, 33, 96),
    (2, 16, 4, 40, 128),
    (1, 2, 2, 7, 256),
    (1, 2, 1, 3, 4100),
    (1, 1, 1, 2, 8192),
    (3, 2, 1, 1600, 64),
    # head counts that leave head slots (kHeadsPerStep heads each) partly empty, several tokens a block
    (2, 20, 3, 301, 128),
    (1, 64, 16, 65, 128),
]


def _ids(shapes):
    return ["x".join(map(str, s)) for s in shapes]


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape", SHAPES, ids=_ids(SHAPES))
def test_apply_rotary_pos_emb_matches_transformers(rotary, shape, dtype):
    batch, qh, kh, seq, d = shape
    q, k = _qk(batch, qh, kh, seq, d, dtype)
    cos, sin = _cos_sin(batch, seq, d, dtype)
    q_before, k_before = q.clone(), k.clone()
    q_out, k_out = rotary.apply_rotary_pos_emb(q, k, cos, sin)
    assert q_out.shape == q.shape and k_out.shape == k.shape
    assert q_out.dtype == k_out.dtype == dtype
    assert torch.equal(q, q_before) and torch.equal(k, k_before)
    _check(q, k, cos, sin, q_out, k_out)


@pytest.mark.parametrize("seed", range(6))
def test_random_shapes(rotary, seed):
    g = _gen(100 + seed)
    batch, seq = (int(v) for v in torch.randint(1, 6, (2,), generator=g))
    seq *= int(torch.randint(1, 30, (1,), generator=g))
    k_heads = int(torch.randint(1, 5, (1,), generator=g))
    q_heads = k_heads * int(torch.randint(1, 5, (1,), generator=g))
    d = 2 * int(torch.randint(1, 100, (1,), generator=g))
    for dtype in DTYPES:
        q, k = _qk(batch, q_heads, k_heads, seq, d, dtype, seed=seed, transposed=bool(seed % 2))
        cos, sin = _cos_sin(batch, seq, d, dtype, seed=seed)
        _check(q, k, cos, sin, *rotary.apply_rotary_pos_emb(q, k, cos, sin))


def _fused_projection_qk(g, b, s, qh, kh, d, dtype):
    """q and k sliced out of one fused qkv projection: neither dense nor contiguous."""
    qkv = torch.randn(b, s, (qh + 2 * kh) * d, generator=g).to(dtype=dtype, device=DEVICE)
    q = qkv[..., : qh * d].view(b, s, qh, d).transpose(1, 2)
    k = qkv[..., qh * d : (qh + kh) * d].view(b, s, kh, d).transpose(1, 2)
    assert not q.is_contiguous() and not k.is_contiguous()
    return q, k


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_strided_layouts(rotary, dtype):
    b, s, qh, kh, d = 2, 11, 8, 2, 64
    g = _gen(7)
    q, k = _fused_projection_qk(g, b, s, qh, kh, d, dtype)
    cos, sin = _cos_sin(b, s, d, dtype)
    _check(q, k, cos, sin, *rotary.apply_rotary_pos_emb(q, k, cos, sin))
    # cos/sin shared over the batch: [1, s, d] and an expanded [b, s, d].
    cos1, sin1 = cos[:1], sin[:1]
    q_out, k_out = rotary.apply_rotary_pos_emb(q, k, cos1, sin1)
    _check(q, k, cos1.expand(b, s, d), sin1.expand(b, s, d), q_out, k_out)
    _check(q, k, cos1.expand(b, s, d), sin1.expand(b, s, d),
           *rotary.apply_rotary_pos_emb(q, k, cos1.expand(b, s, d), sin1.expand(b, s, d)))
    # A misaligned start (element offset 1): every access falls back to scalars.
    base = torch.randn(b, qh, s, d + 1, generator=g).to(dtype=dtype, device=DEVICE)
    qm = base[..., 1:]
    _check(qm, k, cos, sin, *rotary.apply_rotary_pos_emb(qm, k, cos, sin))
    # Strided outputs and a contiguous k with a transposed q.
    kc = k.contiguous()
    q_out = torch.full((b, s, qh, d), float("nan"), dtype=dtype, device=DEVICE).transpose(1, 2)
    k_big = torch.full((b, kh, s, 2 * d), float("nan"), dtype=dtype, device=DEVICE)
    k_out = k_big[..., d:]
    ret = rotary.apply_rotary(q_out, k_out, q, kc, cos, sin)
    assert ret[0] is q_out and ret[1] is k_out
    _check(q, kc, cos, sin, q_out, k_out)
    assert torch.isnan(k_big[..., :d]).all(), "wrote outside the output view"


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_in_place(rotary, dtype):
    q, k = _qk(2, 8, 4, 13, 128, dtype)
    cos, sin = _cos_sin(2, 13, 128, dtype)
    eq, ek = rotary.apply_rotary_pos_emb(q, k, cos, sin)
    rotary.apply_rotary(q, k, q, k, cos, sin)
    assert torch.equal(q, eq) and torch.equal(k, ek)


def test_empty(rotary):
    q = torch.empty(2, 4, 0, 64, device=DEVICE)
    k = torch.empty(2, 2, 0, 64, device=DEVICE)
    cos = torch.empty(2, 0, 64, device=DEVICE)
    q_out, k_out = rotary.apply_rotary_pos_emb(q, k, cos, cos)
    assert q_out.shape == q.shape and k_out.shape == k.shape
    # No k heads at all.
    q, _ = _qk(1, 2, 1, 3, 16, torch.float32)
    k = torch.empty(1, 0, 3, 16, device=DEVICE)
    cos, sin = _cos_sin(1, 3, 16, torch.float32)
    q_out, k_out = rotary.apply_rotary_pos_emb(q, k, cos, sin)
    torch.testing.assert_close(q_out.double(), _ref64(q, cos, sin), rtol=2e-6, atol=2e-6)
    assert k_out.shape == k.shape


def test_nan_inf_propagate(rotary):
    q, k = _qk(1, 2, 1, 3, 8, torch.float32)
    q[0, 1, 2, 1] = float("nan")
    k[0, 0, 1, 6] = float("inf")
    cos, sin = _cos_sin(1, 3, 8, torch.float32)
    q_out, k_out = rotary.apply_rotary_pos_emb(q, k, cos, sin)
    tq, tk = _transformers(q, k, cos, sin)
    assert torch.equal(torch.isnan(q_out), torch.isnan(tq))
    assert torch.equal(torch.isnan(k_out), torch.isnan(tk))
    assert torch.equal(torch.isinf(k_out), torch.isinf(tk))


def test_bad_inputs(rotary):
    q, k = _qk(1, 2, 1, 3, 8, torch.float32)
    cos, sin = _cos_sin(1, 3, 8, torch.float32)
    with pytest.raises(ValueError, match="unsqueeze_dim=1"):
        rotary.apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim=2)
    q7 = torch.randn(1, 2, 3, 7, device=DEVICE)
    with pytest.raises(RuntimeError, match="head_dim must be even"):
        rotary.apply_rotary_pos_emb(q7, q7, cos[..., :7], sin[..., :7])
    with pytest.raises(RuntimeError, match="same dtype as q"):
        rotary.apply_rotary_pos_emb(q, k, cos.half(), sin.half())
    with pytest.raises(RuntimeError, match="float32, float16 or bfloat16"):
        rotary.apply_rotary_pos_emb(q.double(), k.double(), cos.double(), sin.double())
    with pytest.raises(RuntimeError, match="must have shape"):
        rotary.apply_rotary_pos_emb(q, k, cos[:, :2], sin[:, :2])
    with pytest.raises(RuntimeError, match="k must match q"):
        rotary.apply_rotary_pos_emb(q, k[:, :, :2], cos, sin)
    with pytest.raises(RuntimeError, match="4-D"):
        rotary.apply_rotary_pos_emb(q[0], k[0], cos, sin)
    qt = torch.randn(1, 2, 8, 3, device=DEVICE).transpose(2, 3)  # last dim strided
    with pytest.raises(RuntimeError, match="contiguous in its last dimension"):
        rotary.apply_rotary_pos_emb(qt, k, cos, sin)
    q2, k2 = _qk(1, 2, 2, 3, 8, torch.float32)
    with pytest.raises(RuntimeError, match="q_out must not share memory with k_out"):
        rotary.apply_rotary(q2, q2, q2, k2, cos, sin)
    with pytest.raises(RuntimeError, match="k_out must not share memory with q"):
        rotary.apply_rotary(torch.empty_like(q2), q2, q2, k2, cos, sin)


# --- layer and transformers' "rotary_pos_emb" hook ----------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_layer(rotary, dtype):
    layer = rotary.layers.ApplyRotaryPosEmb()
    assert rotary.layers.apply_rotary_transformers is rotary.layers.ApplyRotaryPosEmb
    q, k = _qk(2, 8, 2, 9, 64, dtype)
    cos, sin = _cos_sin(2, 9, 64, dtype)
    _check(q, k, cos, sin, *layer(q, k, cos, sin))
    # unsqueeze_dim=2: [b, s, h, d] layout, through transposed views.
    qs, ks = q.transpose(1, 2), k.transpose(1, 2)
    q2, k2 = layer(qs, ks, cos, sin, unsqueeze_dim=2)
    tq, tk = type(modeling_llama.apply_rotary_pos_emb).forward(
        modeling_llama.apply_rotary_pos_emb, qs, ks, cos, sin, unsqueeze_dim=2
    )
    atol = 4 * ULP[dtype] * 5
    torch.testing.assert_close(q2, tq, rtol=2 * ULP[dtype], atol=atol)
    torch.testing.assert_close(k2, tk, rtol=2 * ULP[dtype], atol=atol)


def test_layer_fallbacks(rotary):
    layer = rotary.layers.ApplyRotaryPosEmb()
    q, k = _qk(1, 4, 2, 5, 32, torch.bfloat16)
    cos, sin = _cos_sin(1, 5, 32, torch.float32)
    # float32 cos/sin with bfloat16 q/k promote, as in transformers.
    got = layer(q, k, cos, sin)
    exp = _transformers(q, k, cos, sin)
    assert got[0].dtype == exp[0].dtype == torch.float32
    torch.testing.assert_close(got, exp)
    # Autograd: the kernel has no backward, the layer keeps the graph.
    qg = q.float().requires_grad_()
    out_q, _ = layer(qg, k.float(), cos, sin)
    out_q.sum().backward()
    assert qg.grad is not None


def test_layer_compiles(rotary):
    layer = rotary.layers.ApplyRotaryPosEmb()
    q, k = _qk(2, 4, 2, 6, 32, torch.float32)
    cos, sin = _cos_sin(2, 6, 32, torch.float32)
    compiled = torch.compile(layer, backend="aot_eager", fullgraph=True)
    got = compiled(q, k, cos, sin)
    torch.testing.assert_close(got, layer(q, k, cos, sin))


def test_rotary_pos_emb_hook(rotary_dir):
    """kernelize a tiny Llama with the layer mapped to transformers' "rotary_pos_emb"."""
    from transformers import LlamaConfig, LlamaModel

    fn = modeling_llama.apply_rotary_pos_emb
    assert getattr(type(fn), "kernel_layer_name", None) == "rotary_pos_emb"
    config = LlamaConfig(
        vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=256,
    )
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    model = LlamaModel(config).to(DEVICE).eval()
    ids = torch.randint(0, 128, (2, 12), generator=_gen(3)).to(DEVICE)
    with torch.no_grad():
        expected = model(ids).last_hidden_state
    mapping = {"rotary_pos_emb": {DEVICE: kernels.LocalLayerRepository(rotary_dir, layer_name="ApplyRotaryPosEmb")}}
    calls = []
    try:
        with kernels.use_kernel_mapping(mapping, inherit_mapping=False):
            # Only "rotary_pos_emb" is mapped: the model's other hooks (RMSNorm,
            # SiLU) keep their forward; anything else about rotary must not fall back.
            model = kernels.kernelize(
                model, mode=kernels.Mode.INFERENCE, device=DEVICE, use_fallback=kernels.KernelizeFallback.NO_LAYER
            )
        assert fn.forward.__func__.__qualname__ == "ApplyRotaryPosEmb.forward"
        kernel_forward = fn.forward
        fn.forward = lambda *a, **kw: (calls.append(1), kernel_forward(*a, **kw))[1]
        with torch.no_grad():
            got = model(ids).last_hidden_state
    finally:
        # The decorated function is one module-level instance: undo the
        # kernelization so later tests see transformers' own math.
        fn.__dict__.pop("forward", None)
    assert len(calls) == config.num_hidden_layers
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


# --- qk_norm_rotary: Qwen3's q_norm / k_norm fused with the rotation -----------
EPS = 1e-6


def _weights(head_dim, dtype, seed=5):
    """q_norm / k_norm weights, 1 +- 0.1 (as a trained Qwen3's), [head_dim] each."""
    g = _gen(seed)
    qw = (1 + 0.1 * torch.randn(head_dim, generator=g)).to(dtype=dtype, device=DEVICE)
    kw = (1 + 0.1 * torch.randn(head_dim, generator=g)).to(dtype=dtype, device=DEVICE)
    return qw, kw


def _norm64(x, w, eps):
    x = x.double()
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w.double()


def _qkn_ref64(x, w, cos, sin, eps=EPS):
    return _ref64(_norm64(x, w, eps), cos, sin)


def _qwen3_torch(q, k, qw, kw, cos, sin, eps=EPS):
    """transformers' Qwen3 prologue at the input dtype: Qwen3RMSNorm's math, then apply_rotary_pos_emb."""
    def norm(x, w):
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
        return w * h.to(x.dtype)

    # apply_rotary_pos_emb's math written out rather than called: a transformers that finds no kernels
    # version it supports (5.17 with kernels 0.17) leaves the function undecorated, without `forward`.
    def rotate(x):
        h = x.shape[-1] // 2
        c, s = cos.unsqueeze(1), sin.unsqueeze(1)
        return x * c + torch.cat((-x[..., h:], x[..., :h]), dim=-1) * s
    return rotate(norm(q, qw)), rotate(norm(k, kw))


def _check_qkn(q, k, qw, kw, cos, sin, q_out, k_out, eps=EPS):
    dtype = q.dtype
    rtol, atol = REF_TOL[dtype]
    torch.testing.assert_close(q_out.double(), _qkn_ref64(q, qw, cos, sin, eps), rtol=rtol, atol=atol)
    torch.testing.assert_close(k_out.double(), _qkn_ref64(k, kw, cos, sin, eps), rtol=rtol, atol=atol)
    # transformers rounds the normalized rows, their weight products and each
    # rotary term to the dtype: allow a few ulp of the largest term.
    tq, tk = _qwen3_torch(q, k, qw, kw, cos, sin, eps)
    big = max(1.0, tq.abs().max().item() if tq.numel() else 0.0, tk.abs().max().item() if tk.numel() else 0.0)
    torch.testing.assert_close(q_out, tq, rtol=4 * ULP[dtype], atol=8 * ULP[dtype] * big)
    torch.testing.assert_close(k_out, tk, rtol=4 * ULP[dtype], atol=8 * ULP[dtype] * big)


# SHAPES plus odd head counts (GQA 7:1, MHA 3:3) and Qwen3-0.6B's 16 + 8 heads of 128.
QKN_SHAPES = SHAPES + [(1, 3, 3, 5, 128), (2, 7, 1, 4, 64), (2, 16, 8, 33, 128), (1, 5, 3, 9, 96)]


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape", QKN_SHAPES, ids=_ids(QKN_SHAPES))
def test_qk_norm_rotary_matches_reference(rotary, shape, dtype):
    batch, qh, kh, seq, d = shape
    # Inputs at 3x the unit scale: the norm must not depend on it.
    q, k = _qk(batch, qh, kh, seq, d, dtype)
    q, k = q * 3, k * 3
    cos, sin = _cos_sin(batch, seq, d, dtype)
    qw, kw = _weights(d, dtype)
    q_before, k_before = q.clone(), k.clone()
    q_out, k_out = rotary.qk_norm_rotary_pos_emb(q, k, qw, kw, cos, sin, EPS)
    assert q_out.shape == q.shape and k_out.shape == k.shape
    assert q_out.dtype == k_out.dtype == dtype
    assert torch.equal(q, q_before) and torch.equal(k, k_before)
    _check_qkn(q, k, qw, kw, cos, sin, q_out, k_out)


@pytest.mark.parametrize("seed", range(6))
def test_qk_norm_rotary_random_shapes(rotary, seed):
    g = _gen(200 + seed)
    batch, seq = (int(v) for v in torch.randint(1, 6, (2,), generator=g))
    seq *= int(torch.randint(1, 30, (1,), generator=g))
    k_heads = int(torch.randint(1, 6, (1,), generator=g))
    q_heads = k_heads * int(torch.randint(1, 5, (1,), generator=g))
    d = 2 * int(torch.randint(1, 100, (1,), generator=g))
    eps = (1e-6, 1e-5, 0.1)[seed % 3]
    for dtype in DTYPES:
        q, k = _qk(batch, q_heads, k_heads, seq, d, dtype, seed=seed, transposed=bool(seed % 2))
        cos, sin = _cos_sin(batch, seq, d, dtype, seed=seed)
        qw, kw = _weights(d, dtype, seed=seed)
        _check_qkn(q, k, qw, kw, cos, sin, *rotary.qk_norm_rotary_pos_emb(q, k, qw, kw, cos, sin, eps), eps=eps)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_qk_norm_rotary_strided_layouts(rotary, dtype):
    b, s, qh, kh, d = 2, 11, 7, 3, 128
    g = _gen(8)
    q, k = _fused_projection_qk(g, b, s, qh, kh, d, dtype)
    cos, sin = _cos_sin(b, s, d, dtype)
    qw, kw = _weights(d, dtype)
    _check_qkn(q, k, qw, kw, cos, sin, *rotary.qk_norm_rotary_pos_emb(q, k, qw, kw, cos, sin, EPS))
    # cos/sin shared over the batch: [1, s, d] and an expanded [b, s, d].
    cos1, sin1 = cos[:1], sin[:1]
    ce, se = cos1.expand(b, s, d), sin1.expand(b, s, d)
    _check_qkn(q, k, qw, kw, ce, se, *rotary.qk_norm_rotary_pos_emb(q, k, qw, kw, cos1, sin1, EPS))
    _check_qkn(q, k, qw, kw, ce, se, *rotary.qk_norm_rotary_pos_emb(q, k, qw, kw, ce, se, EPS))
    # Misaligned starts (element offset 1) of q and of a weight: scalar packs.
    base = torch.randn(b, qh, s, d + 1, generator=g).to(dtype=dtype, device=DEVICE)
    qm = base[..., 1:]
    _check_qkn(qm, k, qw, kw, cos, sin, *rotary.qk_norm_rotary_pos_emb(qm, k, qw, kw, cos, sin, EPS))
    kwm = torch.cat([kw[:1], kw])[1:]
    _check_qkn(q, k, qw, kwm, cos, sin, *rotary.qk_norm_rotary_pos_emb(q, k, qw, kwm, cos, sin, EPS))
    # Strided outputs and a contiguous k with a transposed q; nothing written outside the views.
    kc = k.contiguous()
    q_out = torch.full((b, s, qh, d), float("nan"), dtype=dtype, device=DEVICE).transpose(1, 2)
    k_big = torch.full((b, kh, s, 2 * d), float("nan"), dtype=dtype, device=DEVICE)
    k_out = k_big[..., d:]
    ret = rotary.qk_norm_rotary(q_out, k_out, q, kc, qw, kw, cos, sin, EPS)
    assert ret[0] is q_out and ret[1] is k_out
    _check_qkn(q, kc, qw, kw, cos, sin, q_out, k_out)
    assert torch.isnan(k_big[..., :d]).all(), "wrote outside the output view"


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("d", [8, 128, 4100])
def test_qk_norm_rotary_in_place(rotary, dtype, d):
    q, k = _qk(2, 8, 3, 13, d, dtype)
    cos, sin = _cos_sin(2, 13, d, dtype)
    qw, kw = _weights(d, dtype)
    eq, ek = rotary.qk_norm_rotary_pos_emb(q, k, qw, kw, cos, sin, EPS)
    rotary.qk_norm_rotary(q, k, q, k, qw, kw, cos, sin, EPS)
    assert torch.equal(q, eq) and torch.equal(k, ek)


def test_qk_norm_rotary_empty(rotary):
    q = torch.empty(2, 4, 0, 64, device=DEVICE)
    k = torch.empty(2, 2, 0, 64, device=DEVICE)
    cos = torch.empty(2, 0, 64, device=DEVICE)
    qw, kw = _weights(64, torch.float32)
    q_out, k_out = rotary.qk_norm_rotary_pos_emb(q, k, qw, kw, cos, cos)
    assert q_out.shape == q.shape and k_out.shape == k.shape
    q, _ = _qk(1, 3, 1, 3, 16, torch.float32)
    k = torch.empty(1, 0, 3, 16, device=DEVICE)
    cos, sin = _cos_sin(1, 3, 16, torch.float32)
    qw, kw = _weights(16, torch.float32)
    q_out, k_out = rotary.qk_norm_rotary_pos_emb(q, k, qw, kw, cos, sin)
    torch.testing.assert_close(q_out.double(), _qkn_ref64(q, qw, cos, sin), rtol=2e-6, atol=2e-6)
    assert k_out.shape == k.shape


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_qk_norm_rotary_nan_inf(rotary, dtype):
    """A NaN or Inf poisons its row's norm: NaN/Inf where float64 has them, the other rows untouched."""
    q, k = _qk(1, 3, 2, 4, 128, dtype)
    q[0, 1, 2, 5] = float("nan")
    k[0, 0, 1, 70] = float("inf")
    k[0, 1, 3, 3] = float("-inf")
    cos, sin = _cos_sin(1, 4, 128, dtype)
    qw, kw = _weights(128, dtype)
    q_out, k_out = rotary.qk_norm_rotary_pos_emb(q, k, qw, kw, cos, sin, EPS)
    for got, x, w in ((q_out, q, qw), (k_out, k, kw)):
        ref = _qkn_ref64(x, w, cos, sin)
        assert torch.equal(torch.isnan(got), torch.isnan(ref))
        assert torch.equal(torch.isinf(got), torch.isinf(ref))
        finite = torch.isfinite(ref)
        rtol, atol = REF_TOL[dtype]
        torch.testing.assert_close(got.double()[finite], ref[finite], rtol=rtol, atol=atol)
    assert torch.isnan(q_out[0, 1, 2]).all() and torch.isfinite(q_out[0, 1, :2]).all()


def test_qk_norm_rotary_bad_inputs(rotary):
    q, k = _qk(1, 2, 1, 3, 8, torch.float32)
    cos, sin = _cos_sin(1, 3, 8, torch.float32)
    qw, kw = _weights(8, torch.float32)
    with pytest.raises(RuntimeError, match="qk_norm_rotary: q_weight must have the same dtype as q"):
        rotary.qk_norm_rotary_pos_emb(q, k, qw.half(), kw, cos, sin)
    with pytest.raises(RuntimeError, match="k_weight must be 1-D of size head_dim"):
        rotary.qk_norm_rotary_pos_emb(q, k, qw, kw[:4], cos, sin)
    with pytest.raises(RuntimeError, match="k_weight must be 1-D of size head_dim"):
        rotary.qk_norm_rotary_pos_emb(q, k, qw, kw.expand(2, 8), cos, sin)
    with pytest.raises(RuntimeError, match="q_weight must be contiguous"):
        rotary.qk_norm_rotary_pos_emb(q, k, torch.randn(16, device=DEVICE)[::2], kw, cos, sin)
    with pytest.raises(RuntimeError, match="eps must be non-negative"):
        rotary.qk_norm_rotary_pos_emb(q, k, qw, kw, cos, sin, -1.0)
    # The rotary checks, named after this op.
    with pytest.raises(RuntimeError, match="qk_norm_rotary: head_dim must be even"):
        q7 = torch.randn(1, 2, 3, 7, device=DEVICE)
        rotary.qk_norm_rotary_pos_emb(q7, q7, qw[:7], kw[:7], cos[..., :7], sin[..., :7])
    with pytest.raises(RuntimeError, match="qk_norm_rotary: cos must have the same dtype as q"):
        rotary.qk_norm_rotary_pos_emb(q, k, qw, kw, cos.half(), sin.half())
    with pytest.raises(RuntimeError, match="float32, float16 or bfloat16"):
        rotary.qk_norm_rotary_pos_emb(q.double(), k.double(), qw.double(), kw.double(), cos.double(), sin.double())
    with pytest.raises(RuntimeError, match="k must match q"):
        rotary.qk_norm_rotary_pos_emb(q, k[:, :, :2], qw, kw, cos, sin)
    with pytest.raises(RuntimeError, match="contiguous in its last dimension"):
        qt = torch.randn(1, 2, 8, 3, device=DEVICE).transpose(2, 3)
        rotary.qk_norm_rotary_pos_emb(qt, k, qw, kw, cos, sin)
    q2, k2 = _qk(1, 2, 2, 3, 8, torch.float32)
    with pytest.raises(RuntimeError, match="q_out must not share memory with k_out"):
        rotary.qk_norm_rotary(q2, q2, q2, k2, qw, kw, cos, sin, EPS)
    w_as_out = torch.empty(1, 2, 3, 8, device=DEVICE)
    with pytest.raises(RuntimeError, match="k_out must not share memory with k_weight"):
        rotary.qk_norm_rotary(torch.empty_like(q2), w_as_out, q2, k2, qw, w_as_out[0, 0, 0], cos, sin, EPS)


def test_qk_norm_rotary_compiles(rotary):
    q, k = _qk(2, 4, 2, 6, 32, torch.float32)
    cos, sin = _cos_sin(2, 6, 32, torch.float32)
    qw, kw = _weights(32, torch.float32)

    def fn(q, k, qw, kw, cos, sin):
        return rotary.qk_norm_rotary_pos_emb(q * 2, k, qw, kw, cos, sin, EPS)

    got = torch.compile(fn, backend="aot_eager", fullgraph=True)(q, k, qw, kw, cos, sin)
    torch.testing.assert_close(got, fn(q, k, qw, kw, cos, sin))


def _tiny_qwen3(dtype):
    from transformers import Qwen3Config, Qwen3Model

    config = Qwen3Config(
        vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=6,
        num_key_value_heads=3, head_dim=16, max_position_embeddings=256, rms_norm_eps=1e-6,
    )
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    model = Qwen3Model(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.normal_(1.0, 0.1)
    return config, model.to(device=DEVICE, dtype=dtype).eval()


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_qwen3_attention_hook(rotary_dir, dtype):
    """kernelize a tiny Qwen3 with Qwen3QKNormRotaryAttention mapped onto Qwen3Attention (registered through
    kernels' replace_kernel_forward_from_hub: transformers has no hook spanning q_norm, k_norm and rotary)."""
    modeling_qwen3 = pytest.importorskip("transformers.models.qwen3.modeling_qwen3")
    cls = modeling_qwen3.Qwen3Attention
    assert not hasattr(cls, "kernel_layer_name"), "transformers now decorates Qwen3Attention: use its hook name"
    config, model = _tiny_qwen3(dtype)
    ids = torch.randint(0, 128, (2, 12), generator=_gen(3)).to(DEVICE)
    with torch.no_grad():
        expected = model(ids).last_hidden_state
        ref32 = copy.deepcopy(model).float()(ids).last_hidden_state
    calls = []
    try:
        kernels.replace_kernel_forward_from_hub(cls, "Qwen3Attention")
        mapping = {"Qwen3Attention": {DEVICE: kernels.LocalLayerRepository(
            rotary_dir, layer_name="Qwen3QKNormRotaryAttention")}}
        with kernels.use_kernel_mapping(mapping, inherit_mapping=False):
            model = kernels.kernelize(
                model, mode=kernels.Mode.INFERENCE, device=DEVICE, use_fallback=kernels.KernelizeFallback.NO_LAYER
            )
        attn = [m for m in model.modules() if isinstance(m, cls)]
        assert len(attn) == config.num_hidden_layers
        for m in attn:
            assert m.forward.__func__.__qualname__ == "Qwen3QKNormRotaryAttention.forward"
        # Record whether each call took the kernel (not the layer's fallback).
        fused = sys.modules[attn[0].forward.__func__.__module__]
        fits = fused._norm_rotary_fits
        fused._norm_rotary_fits = lambda *a: (calls.append(fits(*a)), calls[-1])[1]
        try:
            with torch.no_grad():
                got = model(ids).last_hidden_state
        finally:
            fused._norm_rotary_fits = fits
    finally:
        for attr in ("kernel_layer_name", "kernel_condition"):
            if attr in cls.__dict__:
                delattr(cls, attr)
    assert calls == [True] * config.num_hidden_layers
    if dtype == torch.float32:
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    else:
        # One rounding instead of transformers' several: as close to float32 as eager, or closer.
        err = ((got.float() - ref32).norm() / ref32.norm()).item()
        eager_err = ((expected.float() - ref32).norm() / ref32.norm()).item()
        assert err <= 1.1 * eager_err, (err, eager_err)


def test_qwen3_attention_layer_fallbacks(rotary):
    """Inputs the kernel does not take run the model's own q_norm/k_norm + apply_rotary_pos_emb."""
    pytest.importorskip("transformers.models.qwen3.modeling_qwen3")
    layers = rotary.layers
    _, model = _tiny_qwen3(torch.float32)
    attn = model.layers[0].self_attn
    q, k = _qk(1, 6, 3, 5, 16, torch.float32)
    cos, sin = _cos_sin(1, 5, 16, torch.float32)
    from transformers.models.qwen3 import modeling_qwen3

    rot = modeling_qwen3.apply_rotary_pos_emb
    if isinstance(rot, torch.nn.Module):  # decorated: call transformers' math, not a kernelized forward
        rot = type(rot).forward.__get__(rot)
    with torch.no_grad():
        exp = rot(attn.q_norm(q), attn.k_norm(k), cos, sin)
        fused = layers._qk_norm_rotary(q, k, attn.q_norm, attn.k_norm, cos, sin, rot)
        torch.testing.assert_close(fused, exp, rtol=1e-5, atol=1e-5)
        # Mixed dtypes (bfloat16 q/k, float32 cos/sin) take the fallback and promote as transformers does.
        got = layers._qk_norm_rotary(q.bfloat16(), k.bfloat16(), attn.q_norm, attn.k_norm, cos, sin, rot)
        assert got[0].dtype == torch.float32
    # Autograd keeps the graph.
    qg = q.clone().requires_grad_()
    out_q, _ = layers._qk_norm_rotary(qg, k, attn.q_norm, attn.k_norm, cos, sin, rot)
    out_q.sum().backward()
    assert qg.grad is not None and attn.q_norm.weight.grad is not None
