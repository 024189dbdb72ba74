"""Stateless layers for ``kernels.kernelize``.

transformers (5.22) decorates the function ``apply_rotary_pos_emb`` of its
models (Llama, Qwen3, ...) with ``@use_kernel_forward_from_hub("rotary_pos_emb")``:
the decorator turns the function into an ``nn.Module`` instance whose
``forward(q, k, cos, sin, unsqueeze_dim=1)`` is the function, and
``@use_kernelized_func(apply_rotary_pos_emb)`` on the attention classes makes
it visible to ``kernelize``. A layer mapped to ``"rotary_pos_emb"`` replaces
that forward, so ``ApplyRotaryPosEmb.forward`` takes the same arguments and
returns ``(q_embed, k_embed)``.

``apply_rotary_transformers`` is the same class under the name transformers'
default mapping uses for ``"rotary_pos_emb"``.

Inputs the kernel does not take (autograd, mixed dtypes, odd head_dim,
unsupported unsqueeze_dim or shapes) go through the same math in torch.

``Qwen3QKNormRotaryAttention`` is the fused prologue (``qk_norm_rotary``) as a
forward for transformers' ``Qwen3Attention``. No transformers hook spans both
steps: ``q_norm`` / ``k_norm`` are separate ``"RMSNorm"`` modules called on the
projections, and ``"rotary_pos_emb"`` receives q and k already normalized and
rounded, without the norm weights. The only place that sees the projections,
both weights and cos/sin together is the attention forward, which transformers
does not decorate; register it with kernels' hook for third-party layers::

    from kernels import replace_kernel_forward_from_hub
    from transformers.models.qwen3.modeling_qwen3 import Qwen3Attention
    replace_kernel_forward_from_hub(Qwen3Attention, "Qwen3Attention")
    # then map "Qwen3Attention" to this layer and kernelize as usual

The forward does what transformers' (5.17-5.22) ``Qwen3Attention.forward`` does
(project, normalize and rotate q and k, update the cache, attend, project out)
with the norms and the rotation fused; the attention dispatch, the cache update
and the fallbacks use the model file's own functions, so it follows the model's
attention implementation. A transformers release whose attention forward does
more would need this one to follow: that is the price of this hook.
"""

import sys

import torch
import torch.nn as nn

from ._ops import ops

_SUPPORTED = (torch.float32, torch.float16, torch.bfloat16)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def _reference(q, k, cos, sin, unsqueeze_dim):
    # transformers' apply_rotary_pos_emb, verbatim in behaviour.
    cos = cos.unsqueeze(unsqueeze_dim)
    sin = sin.unsqueeze(unsqueeze_dim)
    return (q * cos) + (_rotate_half(q) * sin), (k * cos) + (_rotate_half(k) * sin)


def _last_dim_contiguous(t: torch.Tensor) -> torch.Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


class ApplyRotaryPosEmb(nn.Module):
    """``(q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin)``."""

    has_backward = False
    can_torch_compile = True

    def forward(self, q, k, cos, sin, unsqueeze_dim=1):
        # unsqueeze_dim=2 is the [batch, seq, heads, head_dim] layout: the
        # kernel takes it through transposed views.
        if unsqueeze_dim in (1, -3):
            transposed = False
        elif unsqueeze_dim in (2, -2):
            transposed = True
        else:
            return _reference(q, k, cos, sin, unsqueeze_dim)
        if (
            not isinstance(q, torch.Tensor)
            or not isinstance(k, torch.Tensor)
            or q.dim() != 4
            or k.dim() != 4
            or cos.dim() != 3
            or sin.shape != cos.shape
            or q.dtype not in _SUPPORTED
            or not (q.dtype == k.dtype == cos.dtype == sin.dtype)
            or not (q.device == k.device == cos.device == sin.device)
            or q.shape[-1] % 2 != 0
            or (torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, cos, sin)))
        ):
            return _reference(q, k, cos, sin, unsqueeze_dim)
        qv, kv = (q.transpose(1, 2), k.transpose(1, 2)) if transposed else (q, k)
        batch, _, seq, head_dim = qv.shape
        if (
            kv.shape[0] != batch
            or kv.shape[2] != seq
            or kv.shape[3] != head_dim
            or cos.shape[0] not in (batch, 1)
            or cos.shape[1] != seq
            or cos.shape[2] != head_dim
        ):
            return _reference(q, k, cos, sin, unsqueeze_dim)
        qv, kv = _last_dim_contiguous(qv), _last_dim_contiguous(kv)
        if transposed:
            q_out = torch.empty_like(q, memory_format=torch.contiguous_format)
            k_out = torch.empty_like(k, memory_format=torch.contiguous_format)
        else:
            q_out, k_out = torch.empty_like(qv), torch.empty_like(kv)
        q_out_v, k_out_v = (q_out.transpose(1, 2), k_out.transpose(1, 2)) if transposed else (q_out, k_out)
        ops.apply_rotary(
            q_out_v, k_out_v, qv, kv, _last_dim_contiguous(cos), _last_dim_contiguous(sin)
        )
        return q_out, k_out


apply_rotary_transformers = ApplyRotaryPosEmb


def _norm_rotary_fits(q, k, q_norm, k_norm, cos, sin) -> bool:
    qw, kw = getattr(q_norm, "weight", None), getattr(k_norm, "weight", None)
    eps = getattr(q_norm, "variance_epsilon", None)
    if not all(isinstance(t, torch.Tensor) for t in (q, k, cos, sin, qw, kw)):
        return False
    if eps is None or eps != getattr(k_norm, "variance_epsilon", None):
        return False
    if q.dim() != 4 or k.dim() != 4 or cos.dim() != 3 or sin.shape != cos.shape:
        return False
    if q.dtype not in _SUPPORTED or not (q.dtype == k.dtype == cos.dtype == sin.dtype == qw.dtype == kw.dtype):
        return False
    if not (q.device == k.device == cos.device == sin.device == qw.device == kw.device):
        return False
    batch, _, seq, head_dim = q.shape
    if head_dim % 2 or k.shape[0] != batch or k.shape[2] != seq or k.shape[3] != head_dim:
        return False
    if cos.shape[0] not in (batch, 1) or cos.shape[1] != seq or cos.shape[2] != head_dim:
        return False
    if qw.shape != (head_dim,) or kw.shape != (head_dim,):
        return False
    return not (torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, cos, sin, qw, kw)))


def _qk_norm_rotary(q, k, q_norm, k_norm, cos, sin, rotary_fallback):
    """q/k: [batch, heads, seq, head_dim] views of the [batch, seq, heads, head_dim] projections."""
    if not _norm_rotary_fits(q, k, q_norm, k_norm, cos, sin):
        # The model's own modules and rotary function (which may themselves be
        # kernelized): RMSNorm over head_dim does not care about the transpose.
        return rotary_fallback(q_norm(q), k_norm(k), cos, sin)
    # Outputs laid out as transformers' elementwise rotary leaves them (the
    # transpose of a dense [batch, seq, heads, head_dim]): sdpa and the cache
    # see the same strides as without the kernel.
    q_out = torch.empty_like(q.transpose(1, 2), memory_format=torch.contiguous_format).transpose(1, 2)
    k_out = torch.empty_like(k.transpose(1, 2), memory_format=torch.contiguous_format).transpose(1, 2)
    ops.qk_norm_rotary(
        q_out, k_out, _last_dim_contiguous(q), _last_dim_contiguous(k), q_norm.weight, k_norm.weight,
        _last_dim_contiguous(cos), _last_dim_contiguous(sin), float(q_norm.variance_epsilon),
    )
    return q_out, k_out


class Qwen3QKNormRotaryAttention(nn.Module):
    """``Qwen3Attention.forward`` with ``q_norm``, ``k_norm`` and the rotation in one kernel."""

    has_backward = False
    can_torch_compile = True

    def forward(self, hidden_states, position_embeddings, attention_mask, past_key_values=None, **kwargs):
        # Runs as a method of the model's own Qwen3Attention (kernelize swaps the forward, not the module), so
        # the projections, norms, config and layer index are the model's. Its defining module (modeling_qwen3)
        # supplies the attention registry, the eager attention and the unfused rotary for the fallback.
        model_file = sys.modules[type(self).__module__]
        lead = hidden_states.shape[:-1]

        def heads(proj):  # [*lead, hidden] -> [batch, heads, seq, head_dim], a view of the projection
            return proj(hidden_states).view(*lead, -1, self.head_dim).transpose(1, 2)

        q, k, v = heads(self.q_proj), heads(self.k_proj), heads(self.v_proj)
        cos, sin = position_embeddings
        q, k = _qk_norm_rotary(q, k, self.q_norm, self.k_norm, cos, sin, model_file.apply_rotary_pos_emb)
        if past_key_values is not None:
            k, v = past_key_values.update(k, v, self.layer_idx)
        attend = model_file.ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation,
                                                                  model_file.eager_attention_forward)
        dropout = self.attention_dropout if self.training else 0.0
        out, weights = attend(self, q, k, v, attention_mask, dropout=dropout, scaling=self.scaling,
                              sliding_window=self.sliding_window, **kwargs)
        return self.o_proj(out.reshape(*lead, -1).contiguous()), weights


__all__ = ["ApplyRotaryPosEmb", "Qwen3QKNormRotaryAttention", "apply_rotary_transformers"]
