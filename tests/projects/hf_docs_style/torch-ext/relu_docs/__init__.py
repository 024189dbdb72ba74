import torch

from ._ops import ops


def relu(x: torch.Tensor) -> torch.Tensor:
    out = torch.empty_like(x)
    ops.relu(out, x)
    return out


def leaky_relu(x: torch.Tensor, negative_slope: float = 0.01) -> torch.Tensor:
    out = torch.empty_like(x)
    ops.leaky_relu(out, x, negative_slope)
    return out


__all__ = ["relu", "leaky_relu"]
