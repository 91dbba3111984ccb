"""IIC losses: the package's own API and drop-ins for the original code (same signatures, same numbers).

All losses return ``(loss, loss_no_lamb)``: the lambda-weighted loss that is back-propagated, and the same
expression with lambda = 1 (= -MI).
"""
from __future__ import annotations

import sys
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from . import ops, reference
from ._checks import check_int, check_tensor, check_value

LossPair = Tuple[torch.Tensor, torch.Tensor]


def segmentation_loss(x1: torch.Tensor, x2: torch.Tensor, *, d: int, lamb: float = 1.0,
                      mask: Optional[torch.Tensor] = None, collapsed: bool = False, impl: str = "auto") -> LossPair:
    """IIC segmentation loss of per-pixel class probabilities.

    Args:
        x1, x2: (n, k, H, W) softmax outputs for an image and its transformed twin (x2 warped into x1's frame).
        d: displacement radius (the original's ``half_T_side_dense``): at most max(H, W) for the uncollapsed loss
            (a shift with no pixel pair has no joint); any d >= 0 when collapsed, as in the original (shifts
            beyond the image add nothing).
        lamb: weight of the marginal entropies.
        mask: optional (n, H, W) in {0, 1}.
        collapsed: False (default) is the paper's loss (MI per shift, averaged); True sums the joints over
            shifts first (the original's script default), with the original's detached normaliser.
        impl: "auto" | "kernel" | "fft" | "reference".
    Returns:
        (loss, loss_no_lamb), 0-dim float32 (float64 for float64 inputs).
    """
    J = ops.joint(x1, x2, d, mask=mask, collapsed=collapsed, impl=impl)
    ops.check_joint_values(J)
    return ops.mi(J, lamb, collapsed, impl="reference" if impl == "reference" else "auto")


def clustering_loss(z: torch.Tensor, zt: torch.Tensor, lamb: float = 1.0) -> LossPair:
    """IIC clustering loss. z, zt: (n, k) softmax outputs of paired samples -> (loss, loss_no_lamb)."""
    J = clustering_joint(z, zt)
    ops.check_joint_values(J)
    return ops.mi(J, lamb, collapsed=False)


def clustering_joint(z: torch.Tensor, zt: torch.Tensor) -> torch.Tensor:
    """Raw clustering joint J = sum_n z[n] zt[n]^T. z, zt: (n, k) -> (k, k) in float32 (float64 for float64)."""
    check_tensor(z, "z", floating=True, dims=(2,))
    check_tensor(zt, "zt", floating=True, dims=(2,))
    check_value(zt.shape == z.shape and zt.device == z.device, f"zt must match z's shape {tuple(z.shape)} and "
                f"device {z.device}, got {tuple(zt.shape)} on {zt.device}")
    dtype = ops.accumulation_dtype(z.dtype)
    return z.to(dtype).t() @ zt.to(dtype)


# ---------------------------------------------------------------------------------------------------------------
# Drop-ins for xu-ji/IIC (code/utils/cluster/IID_losses.py, code/utils/segmentation/IID_losses.py)


def IID_loss(x_out: torch.Tensor, x_tf_out: torch.Tensor, lamb: float = 1.0,
             EPS: float = sys.float_info.epsilon) -> LossPair:
    """Drop-in for the original clustering ``IID_loss``. x_out, x_tf_out: (n, k) -> (loss, loss_no_lamb)."""
    if EPS == reference.EPS:
        return clustering_loss(x_out, x_tf_out, lamb)
    J = clustering_joint(x_out, x_tf_out)
    ops.check_joint_values(J)
    return reference.mi(J, lamb, collapsed=False, eps=EPS)


def perform_affine_tf(data: torch.Tensor, tf_matrices: torch.Tensor) -> torch.Tensor:
    """Warps data (n, c, H, W) by per-sample (n, 2, 3) matrices in affine_grid coordinates, bilinear with zero
    padding and the original's (PyTorch 0.4) align_corners=True convention. Identity and horizontal-flip
    matrices, the only ones of the paper runs, are done exactly by copying (the same numbers, far cheaper)."""
    check_tensor(tf_matrices, "all_affine2_to_1", floating=True)
    check_value(tf_matrices.shape == (data.shape[0], 2, 3), f"all_affine2_to_1 must have shape (n, 2, 3) = "
                f"{(data.shape[0], 2, 3)}, got {tuple(tf_matrices.shape)}")
    A = tf_matrices.to(device=data.device, dtype=data.dtype)
    identity = torch.tensor([[1.0, 0, 0], [0, 1, 0]], device=A.device, dtype=A.dtype)
    flip = torch.tensor([[-1.0, 0, 0], [0, 1, 0]], device=A.device, dtype=A.dtype)
    is_flip = (A == flip).flatten(1).all(1)
    if bool(((A == identity).flatten(1).all(1) | is_flip).all()):
        return torch.where(is_flip.view(-1, 1, 1, 1), data.flip(3), data)
    grid = F.affine_grid(A, list(data.shape), align_corners=True)
    return F.grid_sample(data, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def random_translation_multiple(data: torch.Tensor, half_side_min: int, half_side_max: int,
                                generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """One random integer translation for the whole batch, zeros shifted in (the original's sparse option).

    The magnitude per axis is uniform in [half_side_min, half_side_max] with a random sign;
    out[..., y, x] = data[..., y + ty, x + tx].
    """
    if not 0 <= half_side_min <= half_side_max:
        raise ValueError(f"need 0 <= half_T_side_sparse_min <= half_T_side_sparse_max, got "
                         f"{half_side_min}, {half_side_max}")
    draws = torch.randint(half_side_min, half_side_max + 1, (2,), generator=generator)
    signs = torch.randint(0, 2, (2,), generator=generator) * 2 - 1
    ty, tx = (draws * signs).tolist()
    H, W = data.shape[-2:]
    m = half_side_max
    padded = F.pad(data, (m, m, m, m))
    return padded[..., m + ty:m + ty + H, m + tx:m + tx + W]


def _segmentation_dropin(x1_outs, x2_outs, all_affine2_to_1, all_mask_img1, lamb, half_T_side_dense,
                         half_T_side_sparse_min, half_T_side_sparse_max, collapsed, generator, impl) -> LossPair:
    if half_T_side_dense is None:
        raise TypeError("half_T_side_dense (the displacement radius d) is required")
    d = check_int(half_T_side_dense, "half_T_side_dense", low=0)
    x2 = x2_outs
    if all_affine2_to_1 is not None:
        x2 = perform_affine_tf(x2, all_affine2_to_1)
    if half_T_side_sparse_min or half_T_side_sparse_max:
        x2 = random_translation_multiple(x2, half_T_side_sparse_min or 0, half_T_side_sparse_max or 0, generator)
    return segmentation_loss(x1_outs, x2, d=d, lamb=lamb, mask=all_mask_img1,
                             collapsed=collapsed, impl=impl)


def IID_segmentation_loss(x1_outs: torch.Tensor, x2_outs: torch.Tensor, all_affine2_to_1: Optional[torch.Tensor] = None,
                          all_mask_img1: Optional[torch.Tensor] = None, lamb: float = 1.0,
                          half_T_side_dense: Optional[int] = None, half_T_side_sparse_min: Optional[int] = None,
                          half_T_side_sparse_max: Optional[int] = None, *, generator: Optional[torch.Generator] = None,
                          impl: str = "auto") -> LossPair:
    """Drop-in for the original collapsed ``IID_segmentation_loss`` (joints summed over shifts, detached
    normaliser). x1_outs, x2_outs: (n, k, H, W); all_affine2_to_1: (n, 2, 3) sampling x2 back into img1's
    frame (None: identity); all_mask_img1: (n, H, W) (None: all ones). Returns (loss, loss_no_lamb)."""
    return _segmentation_dropin(x1_outs, x2_outs, all_affine2_to_1, all_mask_img1, lamb, half_T_side_dense,
                                half_T_side_sparse_min, half_T_side_sparse_max, True, generator, impl)


def IID_segmentation_loss_uncollapsed(x1_outs: torch.Tensor, x2_outs: torch.Tensor,
                                      all_affine2_to_1: Optional[torch.Tensor] = None,
                                      all_mask_img1: Optional[torch.Tensor] = None, lamb: float = 1.0,
                                      half_T_side_dense: Optional[int] = None,
                                      half_T_side_sparse_min: Optional[int] = None,
                                      half_T_side_sparse_max: Optional[int] = None, *,
                                      generator: Optional[torch.Generator] = None, impl: str = "auto") -> LossPair:
    """Drop-in for the original ``IID_segmentation_loss_uncollapsed`` (the paper's loss: MI per shift, each
    joint normalised by its own sum, averaged over the (2d+1)^2 shifts). Arguments as IID_segmentation_loss."""
    return _segmentation_dropin(x1_outs, x2_outs, all_affine2_to_1, all_mask_img1, lamb, half_T_side_dense,
                                half_T_side_sparse_min, half_T_side_sparse_max, False, generator, impl)
