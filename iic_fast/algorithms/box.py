"""Collapsed IIC joint by a zero-padded box filter and one GEMM: sum_s J[s] = sum_{n,u} box_d(a)[n,:,u] (x) b[n,:,u]."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from .masking import apply_mask


def box_sum(x: torch.Tensor, d: int) -> torch.Tensor:
    """Zero-padded (2d+1)^2 box sum over the last two dims of x (n, c, H, W) -> (n, c, H, W)."""
    if d == 0:
        return x
    T = 2 * d + 1
    # cumulative sums along each axis (separable), zero padding handled by the padded difference
    x = F.pad(x, (d + 1, d, d + 1, d))
    x = x.cumsum(-1)
    x = x[..., T:] - x[..., :-T]
    x = x.cumsum(-2)
    return x[..., T:, :] - x[..., :-T, :]


def joint_box(x1: torch.Tensor, x2: torch.Tensor, d: int, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Collapsed joint sum_s J[s] = sum_{n,u} box_d(a)[n, :, u] (x) b[n, :, u]. x1, x2: (n, k, H, W) -> (k, k)."""
    a, b = apply_mask(x1, x2, mask)
    return torch.einsum("niu,nju->ij", box_sum(a, d).flatten(2), b.flatten(2))
