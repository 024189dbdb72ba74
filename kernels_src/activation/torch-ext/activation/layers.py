"""Stateless layers for ``kernels.kernelize``.

Each layer only defines ``forward``: it reads nothing from the host module and
allocates its output.
"""

import torch
import torch.nn as nn

from ._ops import ops


def _gated(op, x: torch.Tensor) -> torch.Tensor:
    # The kernel needs a unit-stride last dimension and rows that flatten to
    # one stride; .contiguous() is free for the usual (contiguous) input.
    x = x.contiguous()
    out = torch.empty(x.shape[:-1] + (x.shape[-1] // 2,), dtype=x.dtype, device=x.device)
    op(out, x)
    return out


def _unary(op, x: torch.Tensor) -> torch.Tensor:
    x = x.contiguous()
    out = torch.empty_like(x)
    op(out, x)
    return out


class SiluAndMul(nn.Module):
    """``silu(x[..., :d]) * x[..., d:]`` for ``x`` of shape ``[..., 2 * d]``."""

    has_backward = False
    can_torch_compile = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _gated(ops.silu_and_mul, x)


class GeluAndMul(nn.Module):
    """``gelu(x[..., :d]) * x[..., d:]`` (erf GELU)."""

    has_backward = False
    can_torch_compile = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _gated(ops.gelu_and_mul, x)


class GeluTanhAndMul(nn.Module):
    """``gelu_tanh(x[..., :d]) * x[..., d:]`` (tanh-approximated GELU)."""

    has_backward = False
    can_torch_compile = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _gated(ops.gelu_tanh_and_mul, x)


class Silu(nn.Module):
    """``x * sigmoid(x)``; replaces transformers' ``SiLUActivation``."""

    has_backward = False
    can_torch_compile = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _unary(ops.silu, x)


class Gelu(nn.Module):
    """Exact (erf) GELU; replaces transformers' ``GELUActivation``."""

    has_backward = False
    can_torch_compile = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _unary(ops.gelu, x)


class GeluTanh(nn.Module):
    """Tanh-approximated GELU; replaces ``GELUTanh`` / ``NewGELUActivation``."""

    has_backward = False
    can_torch_compile = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _unary(ops.gelu_tanh, x)


class GeluFast(nn.Module):
    """``0.5 x (1 + tanh(0.7978845608 x (1 + 0.044715 x^2)))``; replaces ``FastGELUActivation``."""

    has_backward = False
    can_torch_compile = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _unary(ops.gelu_fast, x)


class GeluQuick(nn.Module):
    """``x * sigmoid(1.702 x)``; replaces ``QuickGELUActivation``."""

    has_backward = False
    can_torch_compile = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _unary(ops.gelu_quick, x)


# Names used by transformers' kernel mapping (kernels-community/activation).
FastGELU = GeluFast
QuickGELU = GeluQuick

__all__ = [
    "SiluAndMul",
    "GeluAndMul",
    "GeluTanhAndMul",
    "Silu",
    "Gelu",
    "GeluTanh",
    "GeluFast",
    "GeluQuick",
    "FastGELU",
    "QuickGELU",
]
