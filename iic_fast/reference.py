"""Pure-PyTorch IIC joints and epilogue: the oracle every kernel is checked against, and the fallback.

Index conventions (DESIGN.md section 1): x1, x2 are (n, k, H, W) class probabilities, T = 2d+1, shift
t_s = (dy, dx) with s = (dy+d)*T + (dx+d), and

    J[s, i, j] = sum_n sum_u a[n, i, u + t_s] * b[n, j, u],   a = x1*m, b = x2*m, zero outside the image.

Three ways to get J, all differentiable by autograd:
- ``joint_conv``: the original conv trick (uncollapsed or collapsed);
- ``joint_box``: collapsed only, a (2d+1)^2 box filter and one GEMM;
- ``joint_fft``: uncollapsed, cross-correlation by real FFTs (cost independent of d).
"""
from __future__ import annotations

import sys
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

EPS: float = sys.float_info.epsilon  # the original's clamp floor, also applied to float32 tensors


def apply_mask(x1: torch.Tensor, x2: torch.Tensor, mask: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
    """Masked maps a = x1*m, b = x2*m; ``mask`` is (n, H, W) in {0, 1} (any dtype) or None."""
    if mask is None:
        return x1, x2
    m = mask.to(x1.dtype).unsqueeze(1)
    return x1 * m, x2 * m


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


def joint_fft(x1: torch.Tensor, x2: torch.Tensor, d: int, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Uncollapsed joint by FFT cross-correlation. x1, x2: (n, k, H, W) -> (T*T, k, k).

    Padding to (H+d, W+d) keeps the cyclic correlation free of wrap-around for |shift| <= d. The per-frequency
    products are a batched (k x n)(n x k) complex GEMM; float32 inputs are transformed in float32.
    """
    a, b = apply_mask(x1, x2, mask)
    n, k, H, W = a.shape
    T = 2 * d + 1
    size = (H + d, W + d)
    fa = torch.fft.rfft2(a, s=size)  # (n, k, Hp, Wf)
    fb = torch.fft.rfft2(b, s=size)
    # c[i, j, t] = sum_n sum_u a[n, i, u + t] b[n, j, u]  <->  C = sum_n A_i * conj(B_j)
    fa = fa.flatten(2).permute(2, 1, 0)  # (F, k, n)
    fb = fb.flatten(2).permute(2, 0, 1).conj()  # (F, n, k)
    prod = torch.bmm(fa, fb).permute(1, 2, 0).reshape(k, k, size[0], size[1] // 2 + 1)
    corr = torch.fft.irfft2(prod, s=size)  # (k, k, Hp, Wp), index t mod size
    rows = torch.arange(-d, d + 1, device=a.device) % size[0]
    cols = torch.arange(-d, d + 1, device=a.device) % size[1]
    window = corr[:, :, rows][:, :, :, cols]  # (k, k, T, T)
    return window.permute(2, 3, 0, 1).reshape(T * T, k, k)


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
