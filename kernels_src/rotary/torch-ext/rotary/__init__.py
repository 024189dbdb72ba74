"""Rotary position embedding kernels (CPU and CUDA), matching transformers'
``apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim=1)`` (rotate_half
convention)::

    q_embed = q * cos + rotate_half(q) * sin   # cos/sin broadcast over heads
    k_embed = k * cos + rotate_half(k) * sin

``q`` is ``[batch, q_heads, seq, head_dim]``, ``k`` is ``[batch, k_heads, seq,
head_dim]`` (grouped-query attention: the head counts may differ), ``cos`` and
``sin`` are ``[batch or 1, seq, head_dim]``. The math is float32 with one
rounding to the output dtype (transformers rounds each product and the sum in
the input dtype, so 16-bit results can differ from it by an ulp). Tensors must
be float32, float16 or bfloat16, all of one dtype, with an even ``head_dim``
and stride 1 in the last dimension; other dimensions may be strided (``q`` is
usually the transpose of a ``[batch, seq, heads, head_dim]`` projection).
q and k are processed in one pass (one kernel launch on CUDA).

``qk_norm_rotary`` fuses Qwen3's attention prologue: each head of ``q`` and
``k`` is RMS-normalized over ``head_dim`` with its weight (``q_norm`` /
``k_norm``: ``x * rsqrt(mean(x^2) + eps) * weight``) and then rotated as
above, in the same single pass, in float32 with one rounding (the unfused
sequence rounds the normalized heads to the input dtype first, so 16-bit
results can differ from it by a few ulp and are closer to float64).
"""

import torch

from . import layers
from ._ops import add_op_namespace_prefix, ops

__all__ = ["apply_rotary", "apply_rotary_pos_emb", "layers", "qk_norm_rotary", "qk_norm_rotary_pos_emb"]


def apply_rotary(
    q_out: torch.Tensor,
    k_out: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Write the rotated ``q`` and ``k`` into ``q_out`` and ``k_out``; returns them.

    Pass ``q_out=q, k_out=k`` to rotate in place.
    """
    ops.apply_rotary(q_out, k_out, q, k, cos, sin)
    return q_out, k_out


def apply_rotary_pos_emb(
    q: torch.Tensor,
    k: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    unsqueeze_dim: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop-in for transformers' ``apply_rotary_pos_emb`` (``unsqueeze_dim=1`` only).

    Returns new tensors ``(q_embed, k_embed)`` laid out like ``q`` and ``k``.
    """
    if unsqueeze_dim != 1:
        raise ValueError(
            f"apply_rotary_pos_emb: only unsqueeze_dim=1 (q/k as [batch, heads, seq, head_dim], "
            f"cos/sin as [batch, seq, head_dim]) is supported, got unsqueeze_dim={unsqueeze_dim}"
        )
    q_out = torch.empty_like(q)
    k_out = torch.empty_like(k)
    ops.apply_rotary(q_out, k_out, q, k, cos, sin)
    return q_out, k_out


def qk_norm_rotary(
    q_out: torch.Tensor,
    k_out: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    q_weight: torch.Tensor,
    k_weight: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    eps: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """RMSNorm each head of ``q`` / ``k`` with ``q_weight`` / ``k_weight`` (``[head_dim]``, of q's
    dtype), then rotate; writes ``q_out`` and ``k_out`` and returns them.

    Layouts and rules as :func:`apply_rotary`; ``q_out=q, k_out=k`` works in place.
    """
    ops.qk_norm_rotary(q_out, k_out, q, k, q_weight, k_weight, cos, sin, float(eps))
    return q_out, k_out


def qk_norm_rotary_pos_emb(
    q: torch.Tensor,
    k: torch.Tensor,
    q_weight: torch.Tensor,
    k_weight: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    eps: float = 1e-6,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``apply_rotary_pos_emb(q_norm(q), k_norm(k), cos, sin)`` in one pass; new tensors laid out like q and k."""
    return qk_norm_rotary(torch.empty_like(q), torch.empty_like(k), q, k, q_weight, k_weight, cos, sin, eps)


# Fake (meta) implementations so the ops trace under torch.compile. The ops
# only mutate their output arguments and return nothing.
def _apply_rotary_fake(q_out, k_out, q, k, cos, sin) -> None:
    return None


def _qk_norm_rotary_fake(q_out, k_out, q, k, q_weight, k_weight, cos, sin, eps) -> None:
    return None


def _register_fake(name: str, fn) -> None:
    """One fake impl per op: this package imported a second time under another module name (transformers'
    KernelConfig loading the build that kernels' kernelize already loaded, seen in scripts/e2e_qwen3.py on the
    H200) shares the op namespace of the first import, whose fake impl stays."""
    try:
        torch.library.register_fake(add_op_namespace_prefix(name))(fn)
    except RuntimeError as e:
        if "already has an fake impl registered" not in str(e):
            raise


_register_fake("apply_rotary", _apply_rotary_fake)
_register_fake("qk_norm_rotary", _qk_norm_rotary_fake)
