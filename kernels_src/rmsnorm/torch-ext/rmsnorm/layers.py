"""Stateless layers for ``kernels.kernelize``.

``RMSNorm`` replaces transformers' RMSNorm modules (``LlamaRMSNorm``,
``Qwen3RMSNorm``, ...): it reads the host module's ``weight`` and
``variance_epsilon`` and keeps no state of its own.
"""

import torch
import torch.nn as nn

from ._ops import ops


def _reference(hidden_states: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    # Same math as transformers, for inputs the kernel does not take (e.g. a
    # float32 weight with bfloat16 activations, which promotes the output).
    input_dtype = hidden_states.dtype
    h = hidden_states.to(torch.float32)
    variance = h.pow(2).mean(-1, keepdim=True)
    h = h * torch.rsqrt(variance + eps)
    return weight * h.to(input_dtype)


_SUPPORTED = (torch.float32, torch.float16, torch.bfloat16)


class RMSNorm(nn.Module):
    """``weight * (x_f32 * rsqrt(mean(x_f32**2) + eps)).to(x.dtype)``."""

    weight: torch.Tensor
    variance_epsilon: float

    has_backward = False
    can_torch_compile = True

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        weight = self.weight
        if (
            weight.dtype != hidden_states.dtype
            or hidden_states.dtype not in _SUPPORTED
            or weight.device != hidden_states.device
            or hidden_states.dim() == 0
        ):
            return _reference(hidden_states, weight, self.variance_epsilon)
        x = hidden_states.contiguous()
        out = torch.empty_like(x)
        ops.rms_norm(out, x, weight.contiguous(), self.variance_epsilon)
        return out


__all__ = ["RMSNorm"]
