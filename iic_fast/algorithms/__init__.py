"""The production pure-PyTorch algorithms for the IIC joint (DESIGN.md section 1), kept apart from the oracle
(``iic_fast.reference``, the original's conv trick) that the tests check them against:

- ``joint_box``: collapsed joint, a (2d+1)^2 box filter and one GEMM;
- ``joint_fft``: uncollapsed joint, cross-correlation by real FFTs of tiles (cost nearly independent of d).

Both take x1, x2 (n, k, H, W) and an optional (n, H, W) mask, are differentiable, and compute in the inputs'
dtype (``iic_fast.ops.joint`` casts to the accumulation dtype first).
"""
from .box import box_sum, joint_box
from .fft import fft_tiles, joint_fft
from .masking import apply_mask

__all__ = ["apply_mask", "box_sum", "joint_box", "fft_tiles", "joint_fft"]
