"""Fused activation kernels (CPU and CUDA).

Every function writes its result into ``out`` (allocated by the caller) and
returns it. Inputs must be float32, float16 or bfloat16; ``out`` has the same
dtype. The last dimension must be contiguous; leading dimensions may be
strided (e.g. a slice ``x[..., :n]``).

Gated variants (``*_and_mul``) take ``x`` of shape ``[..., 2 * d]`` and write
``out[..., d] = act(x[..., :d]) * x[..., d:]``.
"""

import torch

from . import layers
from ._ops import add_op_namespace_prefix, ops

__all__ = [
    "silu_and_mul",
    "gelu_and_mul",
    "gelu_tanh_and_mul",
    "silu",
    "gelu",
    "gelu_tanh",
    "gelu_fast",
    "gelu_quick",
    "layers",
]


def silu_and_mul(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``out = silu(x[..., :d]) * x[..., d:]``."""
    ops.silu_and_mul(out, x)
    return out


def gelu_and_mul(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``out = gelu(x[..., :d]) * x[..., d:]`` with the exact (erf) GELU."""
    ops.gelu_and_mul(out, x)
    return out


def gelu_tanh_and_mul(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``out = gelu_tanh(x[..., :d]) * x[..., d:]`` (tanh approximation)."""
    ops.gelu_tanh_and_mul(out, x)
    return out


def silu(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``out = x * sigmoid(x)``."""
    ops.silu(out, x)
    return out


def gelu(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``out = 0.5 * x * (1 + erf(x / sqrt(2)))``."""
    ops.gelu(out, x)
    return out


def gelu_tanh(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``out = 0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x**3)))``."""
    ops.gelu_tanh(out, x)
    return out


def gelu_fast(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``out = 0.5 * x * (1 + tanh(0.7978845608 * x * (1 + 0.044715 * x * x)))``."""
    ops.gelu_fast(out, x)
    return out


def gelu_quick(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``out = x * sigmoid(1.702 * x)``."""
    ops.gelu_quick(out, x)
    return out


# Fake (meta) implementations so the ops trace under torch.compile. The ops
# only mutate ``out`` and return nothing.
def _fake_out_input(out: torch.Tensor, input: torch.Tensor) -> None:
    return None


for _name in (
    "silu_and_mul",
    "gelu_and_mul",
    "gelu_tanh_and_mul",
    "silu",
    "gelu",
    "gelu_tanh",
    "gelu_fast",
    "gelu_quick",
):
    torch.library.register_fake(add_op_namespace_prefix(_name))(_fake_out_input)
del _name
