"""The oracle: the original's conv trick for the IIC joint and the epilogue that defines the loss (``impl=
"reference"``). Every kernel and every algorithm of ``iic_fast.algorithms`` is checked against these.

Index conventions (DESIGN.md section 1): x1, x2 are (n, k, H, W) class probabilities, T = 2d+1, shift
t_s = (dy, dx) with s = (dy+d)*T + (dx+d), and

    J[s, i, j] = sum_n sum_u a[n, i, u + t_s] * b[n, j, u],   a = x1*m, b = x2*m, zero outside the image.
"""
from __future__ import annotations

import sys
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from .algorithms.masking import apply_mask

EPS: float = sys.float_info.epsilon  # the original's clamp floor, also applied to float32 tensors


def joint_conv(x1: torch.Tensor, x2: torch.Tensor, d: int, mask: Optional[torch.Tensor] = None,
               collapsed: bool = False) -> torch.Tensor:
    """The original's conv trick. x1, x2: (n, k, H, W) -> J (T*T, k, k), or (k, k) summed over shifts."""
    a, b = apply_mask(x1, x2, mask)
    k, T = a.shape[1], 2 * d + 1
    # conv2d is a cross-correlation: out[i, j, dy+d, dx+d] = sum_{n,u} a[n, i, u + (dy, dx)] * b[n, j, u]
    out = F.conv2d(a.transpose(0, 1).contiguous(), b.transpose(0, 1).contiguous(), padding=d)
    if collapsed:
        return out.sum(dim=(2, 3))
    return out.permute(2, 3, 0, 1).reshape(T * T, k, k)


def mi(J: torch.Tensor, lamb: float = 1.0, collapsed: bool = False,
       eps: float = EPS) -> Tuple[torch.Tensor, torch.Tensor]:
    """The IIC epilogue on raw joints. J: (S, k, k) or (k, k) -> (loss, loss_no_lamb), 0-dim tensors.

    Each slice is normalised by its own sum, symmetrised, its marginals taken before clamping to ``eps``, and
    loss = sum_ij -P_ij (ln P_ij - lamb ln p_i - lamb ln p_j); the result is the mean over slices.
    ``collapsed=True`` detaches the normaliser, as the original's ``float(P.sum())`` does.
    """
    P = J.unsqueeze(0) if J.dim() == 2 else J
    Z = P.sum(dim=(1, 2), keepdim=True)
    if collapsed:
        Z = Z.detach()
    P = P / Z
    P = (P + P.transpose(1, 2)) / 2
    p_i = P.sum(dim=2, keepdim=True).clamp(min=eps)  # (S, k, 1) row marginal
    p_j = P.sum(dim=1, keepdim=True).clamp(min=eps)  # (S, 1, k) column marginal
    P = P.clamp(min=eps)
    log_P, log_pi, log_pj = P.log(), p_i.log(), p_j.log()
    S = P.shape[0]
    loss = -(P * (log_P - lamb * log_pi - lamb * log_pj)).sum() / S
    loss_no_lamb = -(P * (log_P - log_pi - log_pj)).sum() / S
    return loss, loss_no_lamb
