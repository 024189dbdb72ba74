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

import os
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


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_strided_layouts(rotary, dtype):
    b, s, qh, kh, d = 2, 11, 8, 2, 64
    g = _gen(7)
    # q/k/v sliced out of one fused projection: neither dense nor contiguous.
    qkv = torch.randn(b, s, (qh + 2 * kh) * d, generator=g).to(dtype=dtype, device=DEVICE)
    q = qkv[..., : qh * d].view(b, s, qh, d).transpose(1, 2)
    k = qkv[..., qh * d : (qh + kh) * d].view(b, s, kh, d).transpose(1, 2)
    assert not q.is_contiguous() and not k.is_contiguous()
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
