"""Masked maps, the first step of every joint algorithm."""
from __future__ import annotations

from typing import Optional, Tuple

import torch


def apply_mask(x1: torch.Tensor, x2: torch.Tensor, mask: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
    """Masked maps a = x1*m, b = x2*m; ``mask`` is (n, H, W) in {0, 1} (any dtype) or None."""
    if mask is None:
        return x1, x2
    m = mask.to(x1.dtype).unsqueeze(1)
    return x1 * m, x2 * m
