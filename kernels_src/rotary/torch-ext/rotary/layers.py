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
"""

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

__all__ = ["ApplyRotaryPosEmb", "apply_rotary_transformers"]
