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


def reference_qk_norm(x, w, cos, sin, eps):
    x = x.double()
    return reference(x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w.double(), cos, sin)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("d", [2, 6, 64, 128])
def test_qk_norm_rotary(rotary, dtype, d):
    q = (3 * torch.randn(2, 5, 7, d, device=DEVICE)).transpose(1, 2).to(dtype)  # [2, 7, 5, d], strided
    k = torch.randn(2, 3, 5, d, device=DEVICE).to(dtype)  # GQA: 3 k heads
    qw = (1 + 0.1 * torch.randn(d, device=DEVICE)).to(dtype)
    kw = (1 + 0.1 * torch.randn(d, device=DEVICE)).to(dtype)
    angles = torch.rand(2, 5, d, device=DEVICE) * 6.2832
    cos, sin = angles.cos().to(dtype), angles.sin().to(dtype)
    q_out, k_out = rotary.qk_norm_rotary_pos_emb(q, k, qw, kw, cos, sin, 1e-6)
    torch.testing.assert_close(q_out.double(), reference_qk_norm(q, qw, cos, sin, 1e-6), rtol=TOL[dtype], atol=1e-4)
    torch.testing.assert_close(k_out.double(), reference_qk_norm(k, kw, cos, sin, 1e-6), rtol=TOL[dtype], atol=1e-4)
    # In place, and a NaN poisons only its own head row.
    q2 = q.clone()
    q2[0, 1, 2, 0] = float("nan")
    rotary.qk_norm_rotary(q2, k, q2, k, qw, kw, cos, sin, 1e-6)
    assert torch.isnan(q2[0, 1, 2]).all()
    torch.testing.assert_close(q2[0, 0], q_out[0, 0])


def test_qwen3_attention_layer(rotary):
    """The layer mapped onto transformers' Qwen3Attention gives the model's output."""
    qwen3 = pytest.importorskip("transformers.models.qwen3.modeling_qwen3")
    from transformers import Qwen3Config

    config = Qwen3Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=8)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    attn = qwen3.Qwen3Attention(config, layer_idx=0).to(DEVICE).eval()
    x = torch.randn(2, 5, 32, device=DEVICE)
    pos = qwen3.Qwen3RotaryEmbedding(config).to(DEVICE)(x, torch.arange(5, device=DEVICE)[None])
    with torch.no_grad():
        expected, _ = attn(x, pos, None)
        got, _ = rotary.layers.Qwen3QKNormRotaryAttention.forward(attn, x, pos, None)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
