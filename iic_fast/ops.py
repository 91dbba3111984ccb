"""The iic_fast custom ops (autograd and fake kernels) and the dispatch between algorithms.

``joint`` and ``mi`` are the building blocks of every loss: they validate their arguments (``iic_fast._checks``:
TypeError for a wrong kind, ValueError for a wrong value), pick an implementation (``impl``) and return the same
numbers whichever one runs.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from . import algorithms, reference
from ._checks import check_choice, check_int, check_tensor, check_value
from ._extension import HAS_OPS, has_kernels, warn_no_kernels

IMPLS = ("auto", "kernel", "fft", "reference")

# The direct kernel costs ~2 T^2 k^2 flops per pixel, the tiled FFT roughly k times a T-independent amount:
# `auto` runs the direct kernel for uncollapsed joints while T^2 k is at most this. Crossovers measured at
# n=4 (CPU, k = 3, 8, 24) and n=75 (H100, k = 3, 24) on 200x200 maps, forward + backward.
DIRECT_MAX_COST = {"cpu": 600, "cuda": 500}


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype joints and epilogues are computed in: float64 for float64, float32 for every other floating
    dtype (EPS = 2.2e-16 underflows in half precision). The kernels follow the same rule (csrc/common.h)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


if HAS_OPS:
    # The fake (meta) kernels check their arguments as the compiled ones do (csrc/checks.cpp), with the same
    # messages and error type (RuntimeError), so that a traced program fails where an eager one would.

    def _check_joint_args(x1, x2, d):
        torch._check(x1.dim() == 4, lambda: f"iic_fast: x1 must have shape (n, k, H, W), got {list(x1.shape)}")
        torch._check(x2.shape == x1.shape,
                     lambda: f"iic_fast: x2 must have the shape of x1 {list(x1.shape)}, got {list(x2.shape)}")
        torch._check(x1.dtype == x2.dtype,
                     lambda: f"iic_fast: x1 and x2 must have one dtype, got {x1.dtype} and {x2.dtype}")
        torch._check(x1.is_floating_point(), lambda: f"iic_fast: x1 must be floating point, got {x1.dtype}")
        torch._check(x1.device == x2.device,
                     lambda: f"iic_fast: x1 and x2 must be on one device, got {x1.device} and {x2.device}")
        torch._check(x1.shape[1] > 0, lambda: f"iic_fast: x1 must have k >= 1 classes, got shape {list(x1.shape)}")
        torch._check(d >= 0, lambda: f"iic_fast: d must be >= 0, got {d}")
        torch._check(d <= torch.sym_max(x1.shape[2], x1.shape[3]),
                     lambda: f"iic_fast: d={d} exceeds the image size {x1.shape[2]}x{x1.shape[3]}")

    @torch.library.register_fake("iic_fast::joint")
    def _joint_fake(x1, x2, d, collapsed):
        _check_joint_args(x1, x2, d)
        k = x1.shape[1]
        shape = (k, k) if collapsed else ((2 * d + 1) ** 2, k, k)
        return x1.new_empty(shape, dtype=accumulation_dtype(x1.dtype))

    @torch.library.register_fake("iic_fast::joint_backward")
    def _joint_backward_fake(grad, x1, x2, d, collapsed):
        _check_joint_args(x1, x2, d)
        k = x1.shape[1]
        shape = (k, k) if collapsed else ((2 * d + 1) ** 2, k, k)
        torch._check(tuple(grad.shape) == shape, lambda: f"iic_fast: grad_joint has shape {list(grad.shape)}, "
                     f"expected the joint's shape for k={k}, d={d}, collapsed={collapsed}")
        torch._check(grad.is_floating_point(),
                     lambda: f"iic_fast: grad_joint must be floating point, got {grad.dtype}")
        torch._check(grad.device == x1.device,
                     lambda: f"iic_fast: grad_joint must be on {x1.device}, got {grad.device}")
        return torch.empty_like(x1, memory_format=torch.contiguous_format), torch.empty_like(
            x2, memory_format=torch.contiguous_format)

    @torch.library.register_fake("iic_fast::mi")
    def _mi_fake(joint, lamb, collapsed):
        torch._check(joint.dim() in (2, 3) and joint.shape[-1] == joint.shape[-2] and joint.shape[-1] > 0,
                     lambda: f"iic_fast: joint must have shape (S, k, k) or (k, k), got {list(joint.shape)}")
        torch._check(joint.is_floating_point(), lambda: f"iic_fast: joint must be floating point, got {joint.dtype}")
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


def check_maps(x1: torch.Tensor, x2: torch.Tensor, d: int, mask: Optional[torch.Tensor] = None,
               collapsed: bool = False) -> None:
    """Checks the arguments of ``joint``: x1, x2 matching non-empty (n, k, H, W) tensors of one floating dtype
    on one device; d an int in [0, max(H, W)] (collapsed: any d >= 0, as in the original, where shifts beyond
    the image add nothing); mask None or (n, H, W) on the same device. TypeError for a wrong kind of argument,
    ValueError for a wrong value, naming the argument."""
    check_tensor(x1, "x1", floating=True)
    check_tensor(x2, "x2", floating=True)
    check_value(x1.dim() == 4, f"x1 must have shape (n, k, H, W), got {tuple(x1.shape)}")
    check_value(x2.shape == x1.shape, f"x2 must have the shape of x1 {tuple(x1.shape)}, got {tuple(x2.shape)}")
    if x2.dtype != x1.dtype:
        raise TypeError(f"x1 and x2 must share one floating dtype, got {x1.dtype} and {x2.dtype}")
    check_value(x1.device == x2.device, f"x1 and x2 must be on one device, got {x1.device} and {x2.device}")
    check_value(min(x1.shape) > 0, f"x1 must be non-empty, got shape {tuple(x1.shape)}")
    n, _, H, W = x1.shape
    check_int(d, "d", low=0, high=None if collapsed else max(H, W))
    if mask is not None:
        check_tensor(mask, "mask")
        check_value(tuple(mask.shape) == (n, H, W), f"mask must have shape (n, H, W) = {(n, H, W)}, "
                    f"got {tuple(mask.shape)}")
        check_value(mask.device == x1.device, f"mask must be on {x1.device}, got {mask.device}")


def choose_impl(x1: torch.Tensor, d: int, collapsed: bool, impl: str = "auto") -> str:
    """The algorithm ``joint`` runs: "kernel", "box" (collapsed, pure PyTorch), "fft" or "reference".

    auto: compiled kernel for collapsed joints; for uncollapsed ones the direct kernel while (2d+1)^2 k is at
    most DIRECT_MAX_COST[device] (its cost grows with the shifts, the FFT's does not), else the FFT.
    """
    check_choice(impl, "impl", IMPLS)
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


def joint(x1: torch.Tensor, x2: torch.Tensor, d: int, *, mask: Optional[torch.Tensor] = None,
          collapsed: bool = False, impl: str = "auto") -> torch.Tensor:
    """Raw IIC joint of displaced patches.

    Args:
        x1, x2: (n, k, H, W) class probabilities (x2 already warped into x1's frame).
        d: displacement radius; T = 2d+1 shifts per axis; at most max(H, W) for uncollapsed joints, any
            d >= 0 when collapsed (shifts beyond the image add nothing, as in the original).
        mask: optional (n, H, W) in {0, 1}; masked pixels take part neither as centre nor as partner.
        collapsed: sum the joints over shifts.
        impl: "auto" | "kernel" | "fft" | "reference" (the conv trick).
    Returns:
        J (T*T, k, k) in shift order s = (dy+d)*T + (dx+d), or (k, k) when collapsed; float32 for
        float32/float16/bfloat16 inputs, float64 for float64.
    """
    check_maps(x1, x2, d, mask, collapsed)
    if collapsed:  # shifts of max(H, W) or more pair no pixels: the same joint, within every algorithm's range
        d = min(d, max(x1.shape[2], x1.shape[3]))
    algorithm = choose_impl(x1, d, collapsed, impl)
    if algorithm == "kernel":
        a, b = algorithms.apply_mask(x1, x2, mask)
        return torch.ops.iic_fast.joint(a, b, d, collapsed)
    dtype = accumulation_dtype(x1.dtype)
    a, b = x1.to(dtype), x2.to(dtype)
    if algorithm == "box":
        return algorithms.joint_box(a, b, d, mask)
    if algorithm == "fft":
        return algorithms.joint_fft(a, b, d, mask)
    return reference.joint_conv(a, b, d, mask, collapsed=collapsed)


def mi(J: torch.Tensor, lamb: float = 1.0, collapsed: bool = False,
       impl: str = "auto") -> Tuple[torch.Tensor, torch.Tensor]:
    """Differentiable IIC epilogue. J: (S, k, k) or (k, k) raw joint -> (loss, loss_no_lamb), 0-dim.

    Uncollapsed: every slice normalised by its own sum, symmetrised, clamped to EPS; loss averaged over
    slices (lamb = 1 gives -MI). ``collapsed=True`` detaches the normaliser of a (k, k) joint, as the
    original's collapsed loss does. Uses the fused kernel when compiled for J's device.
    """
    check_tensor(J, "J", floating=True)
    check_value(J.dim() in (2, 3) and J.shape[-1] == J.shape[-2] and J.numel() > 0,
                f"J must be a (S, k, k) or (k, k) tensor, got shape {tuple(J.shape)}")
    check_choice(impl, "impl", IMPLS)
    J = J.to(accumulation_dtype(J.dtype))  # the epilogue is never run in half precision (EPS underflows)
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
    check_value(bool(torch.isfinite(slices).all()),
                "the inputs contain non-finite values (NaN or inf): the joint is not finite")
    empty = (slices.sum(dim=(1, 2)) <= 0).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"the joint has zero mass for {len(empty)} shift(s) (first: index {empty[0]}): the mask "
                         "is all zero, or d is so large that some shifts have no valid pixel pair")
