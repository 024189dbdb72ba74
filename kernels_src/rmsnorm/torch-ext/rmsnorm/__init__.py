"""RMSNorm kernels (CPU and CUDA), numerically matching transformers' RMSNorm.

``y = weight * (x_f32 * rsqrt(mean(x_f32**2, -1) + eps)).to(x.dtype)``

Inputs must be float32, float16 or bfloat16, and ``weight`` must have the same
dtype as the input. The last dimension must be contiguous; leading dimensions
may be strided. Outputs may alias inputs (``out`` with ``x``, ``residual_out``
with ``residual``) for in-place updates.
"""

import torch

from . import layers
from ._ops import add_op_namespace_prefix, ops

__all__ = ["rms_norm", "fused_add_rms_norm", "layers"]


def rms_norm(
    out: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, eps: float
) -> torch.Tensor:
    """Write ``rmsnorm(x) * weight`` into ``out`` and return ``out``."""
    ops.rms_norm(out, x, weight, eps)
    return out


def fused_add_rms_norm(
    out: torch.Tensor,
    residual_out: torch.Tensor,
    x: torch.Tensor,
    residual: torch.Tensor,
    weight: torch.Tensor,
    eps: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Residual add fused with RMSNorm.

    ``residual_out = (x + residual).to(x.dtype)`` and
    ``out = rmsnorm(residual_out) * weight``; returns ``(out, residual_out)``.
    Pass ``out=x, residual_out=residual`` to update both in place.
    """
    ops.fused_add_rms_norm(out, residual_out, x, residual, weight, eps)
    return out, residual_out


# Fake (meta) implementations so the ops trace under torch.compile. The ops
# only mutate their output arguments and return nothing.
@torch.library.register_fake(add_op_namespace_prefix("rms_norm"))
def _rms_norm_fake(out, input, weight, eps) -> None:
    return None


@torch.library.register_fake(add_op_namespace_prefix("fused_add_rms_norm"))
def _fused_add_rms_norm_fake(out, residual_out, input, residual, weight, eps) -> None:
    return None
