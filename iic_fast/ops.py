"""The iic_fast custom ops (autograd and fake kernels) and the dispatch between algorithms.

``joint`` and ``mi`` are the building blocks of every loss: they validate their arguments, pick an
implementation (``impl``) and return the same numbers whichever one runs.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from . import reference
from ._extension import HAS_OPS, has_kernels, warn_no_kernels

IMPLS = ("auto", "kernel", "fft", "reference")

# The direct kernel costs ~2 T^2 k^2 flops per pixel, the tiled FFT roughly k times a T-independent amount:
# `auto` runs the direct kernel for uncollapsed joints while T^2 k is at most this. Crossovers measured at
# n=4 (CPU, k = 3, 8, 24) and n=75 (H100, k = 3, 24) on 200x200 maps, forward + backward.
DIRECT_MAX_COST = {"cpu": 600, "cuda": 500}


if HAS_OPS:

    @torch.library.register_fake("iic_fast::joint")
    def _joint_fake(x1, x2, d, collapsed):
        k = x1.shape[1]
        dtype = torch.float64 if x1.dtype == torch.float64 else torch.float32
        shape = (k, k) if collapsed else ((2 * d + 1) ** 2, k, k)
        return x1.new_empty(shape, dtype=dtype)

    @torch.library.register_fake("iic_fast::joint_backward")
    def _joint_backward_fake(grad, x1, x2, d, collapsed):
        return torch.empty_like(x1, memory_format=torch.contiguous_format), torch.empty_like(
            x2, memory_format=torch.contiguous_format)

    @torch.library.register_fake("iic_fast::mi")
    def _mi_fake(joint, lamb, collapsed):
        return joint.new_empty(()), joint.new_empty(()), torch.empty_like(joint)

    def _joint_setup(ctx, inputs, output):
        x1, x2, d, collapsed = inputs
        ctx.save_for_backward(x1, x2)
        ctx.d, ctx.collapsed = d, collapsed

    def _joint_grad(ctx, grad):
        x1, x2 = ctx.saved_tensors
        dx1, dx2 = torch.ops.iic_fast.joint_backward(grad.contiguous(), x1, x2, ctx.d, ctx.collapsed)
        return dx1, dx2, None, None

    torch.library.register_autograd("iic_fast::joint", _joint_grad, setup_context=_joint_setup)

    def _mi_setup(ctx, inputs, output):
        joint, lamb, collapsed = inputs
        ctx.mark_non_differentiable(output[2])
        ctx.save_for_backward(joint, output[2])
        ctx.collapsed = collapsed

    def _mi_grad(ctx, grad_loss, grad_loss_no_lamb, _):
        joint, dloss = ctx.saved_tensors
        grad = grad_loss * dloss
        if grad_loss_no_lamb is not None:  # the no-lambda loss is rarely differentiated: recompute its gradient
            grad = grad + grad_loss_no_lamb * torch.ops.iic_fast.mi(joint, 1.0, ctx.collapsed)[2]
        return grad, None, None

    torch.library.register_autograd("iic_fast::mi", _mi_grad, setup_context=_mi_setup)


def check_maps(x1: torch.Tensor, x2: torch.Tensor, d: int, mask: Optional[torch.Tensor] = None) -> None:
    """Raises a ValueError/TypeError naming the argument unless x1, x2 are matching (n, k, H, W) floating
    tensors on one device, 0 <= d <= max(H, W), and mask is None or (n, H, W) on the same device."""
    for name, x in (("x1", x1), ("x2", x2)):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x1.dim() != 4:
        raise ValueError(f"x1 must have shape (n, k, H, W), got {tuple(x1.shape)}")
    if x2.shape != x1.shape:
        raise ValueError(f"x2 must have the shape of x1 {tuple(x1.shape)}, got {tuple(x2.shape)}")
    if not x1.is_floating_point() or x2.dtype != x1.dtype:
        raise TypeError(f"x1 and x2 must share one floating dtype, got {x1.dtype} and {x2.dtype}")
    if x1.device != x2.device:
        raise ValueError(f"x1 and x2 must be on one device, got {x1.device} and {x2.device}")
    if min(x1.shape) == 0:
        raise ValueError(f"x1 must be non-empty, got shape {tuple(x1.shape)}")
    if isinstance(d, bool) or not isinstance(d, int):
        raise TypeError(f"d must be an int, got {d!r}")
    n, _, H, W = x1.shape
    if not 0 <= d <= max(H, W):
        raise ValueError(f"d must be in [0, max(H, W)] = [0, {max(H, W)}], got {d}")
    if mask is not None:
        if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != (n, H, W):
            got = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise ValueError(f"mask must have shape (n, H, W) = {(n, H, W)}, got {got}")
        if mask.device != x1.device:
            raise ValueError(f"mask must be on {x1.device}, got {mask.device}")


def choose_impl(x1: torch.Tensor, d: int, collapsed: bool, impl: str = "auto") -> str:
    """The algorithm ``joint`` runs: "kernel", "box" (collapsed, pure PyTorch), "fft" or "reference".

    auto: compiled kernel for collapsed joints; for uncollapsed ones the direct kernel while (2d+1)^2 k is at
    most DIRECT_MAX_COST[device] (its cost grows with the shifts, the FFT's does not), else the FFT.
    """
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    if impl == "reference":
        return "reference"
    if impl == "fft":
        return "box" if collapsed else "fft"
    kernels = has_kernels(x1.device)
    if not kernels:
        warn_no_kernels(x1.device)
        return "reference" if impl == "kernel" else ("box" if collapsed else "fft")
    if impl == "kernel" or collapsed:
        return "kernel"
    direct_ok = (2 * d + 1) ** 2 * x1.shape[1] <= DIRECT_MAX_COST.get(x1.device.type, 0)
    return "kernel" if direct_ok else "fft"


def _accumulation_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def joint(x1: torch.Tensor, x2: torch.Tensor, d: int, *, mask: Optional[torch.Tensor] = None,
          collapsed: bool = False, impl: str = "auto") -> torch.Tensor:
    """Raw IIC joint of displaced patches.

    Args:
        x1, x2: (n, k, H, W) class probabilities (x2 already warped into x1's frame).
        d: displacement radius; T = 2d+1 shifts per axis.
        mask: optional (n, H, W) in {0, 1}; masked pixels take part neither as centre nor as partner.
        collapsed: sum the joints over shifts.
        impl: "auto" | "kernel" | "fft" | "reference" (the conv trick).
    Returns:
        J (T*T, k, k) in shift order s = (dy+d)*T + (dx+d), or (k, k) when collapsed; float32 for
        float32/float16/bfloat16 inputs, float64 for float64.
    """
    check_maps(x1, x2, d, mask)
    algorithm = choose_impl(x1, d, collapsed, impl)
    if algorithm == "kernel":
        a, b = reference.apply_mask(x1, x2, mask)
        return torch.ops.iic_fast.joint(a, b, d, collapsed)
    dtype = _accumulation_dtype(x1)
    a, b = x1.to(dtype), x2.to(dtype)
    if algorithm == "box":
        return reference.joint_box(a, b, d, mask)
    if algorithm == "fft":
        return reference.joint_fft(a, b, d, mask)
    return reference.joint_conv(a, b, d, mask, collapsed=collapsed)


def mi(J: torch.Tensor, lamb: float = 1.0, collapsed: bool = False,
       impl: str = "auto") -> Tuple[torch.Tensor, torch.Tensor]:
    """Differentiable IIC epilogue. J: (S, k, k) or (k, k) raw joint -> (loss, loss_no_lamb), 0-dim.

    Uncollapsed: every slice normalised by its own sum, symmetrised, clamped to EPS; loss averaged over
    slices (lamb = 1 gives -MI). ``collapsed=True`` detaches the normaliser of a (k, k) joint, as the
    original's collapsed loss does. Uses the fused kernel when compiled for J's device.
    """
    if not isinstance(J, torch.Tensor) or J.dim() not in (2, 3) or J.shape[-1] != J.shape[-2] or J.numel() == 0:
        raise ValueError(f"J must be a (S, k, k) or (k, k) tensor, got {getattr(J, 'shape', type(J).__name__)}")
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    if not J.is_floating_point():
        raise TypeError(f"J must be floating point, got {J.dtype}")
    J = J.to(_accumulation_dtype(J))  # the epilogue is never run in half precision (EPS underflows)
    if impl in ("auto", "kernel") and has_kernels(J.device):
        loss, loss_no_lamb, _ = torch.ops.iic_fast.mi(J, float(lamb), collapsed)
        return loss, loss_no_lamb
    return reference.mi(J, lamb, collapsed)


def check_joint_values(J: torch.Tensor) -> None:
    """Raises ValueError when J has non-finite entries or a slice with zero mass (all-zero mask, or d so
    large that a shift has no valid pixel pair): the epilogue would return NaN. One tiny host sync; skipped
    while torch.compile traces."""
    if torch.compiler.is_compiling():
        return
    slices = J.reshape(-1, J.shape[-2], J.shape[-1])
    if not bool(torch.isfinite(slices).all()):
        raise ValueError("the inputs contain non-finite values (NaN or inf): the joint is not finite")
    empty = (slices.sum(dim=(1, 2)) <= 0).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"the joint has zero mass for {len(empty)} shift(s) (first: index {empty[0]}): the mask "
                         "is all zero, or d is so large that some shifts have no valid pixel pair")
