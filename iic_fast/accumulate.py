"""Exact large-batch and multi-GPU IIC gradients through the joint, a sufficient statistic.

The IIC loss is not a sum over samples, so ordinary gradient accumulation changes the objective. But the loss
depends on the batch only through the raw joint J (a T^2 x k x k tensor): accumulate J over micro-batches
(pass 1, no graph), all-reduce it across processes, compute G = dL/dJ once, then back-propagate <G, J_mb>
through each micro-batch (pass 2). Since J = sum_mb J_mb, the parameter gradients equal the full batch's.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.distributed as dist

from . import ops
from ._checks import check_choice, check_int, check_value
from .losses import clustering_joint


class JointAccumulator:
    """Accumulates IIC joints over micro-batches (and processes) for the exact loss and gradient of the whole.

    Args:
        d: displacement radius for segmentation joints; None for the clustering joint of (n, k) outputs.
        collapsed: sum the segmentation joints over shifts (the original's collapsed loss).
        impl: joint implementation, as in ``iic_fast.joint``.

    Usage::

        acc = JointAccumulator(d=10)
        with torch.no_grad():
            for x1, x2, m in micro_batches: acc.add(net(x1), net(x2), mask=m)   # pass 1
        acc.all_reduce()                                   # sums J over ranks when torch.distributed is up
        loss, loss_no_lamb = acc.loss(lamb=1.5)            # the global loss (no graph)
        for x1, x2, m in micro_batches: acc.backward(net(x1), net(x2), mask=m)  # pass 2: .grad += exact share

    Under DistributedDataParallel every rank's backward is averaged over ``world_size`` ranks: ``backward``
    scales its contribution by ``world_size`` so the averaged gradient is the gradient of the global loss.
    BatchNorm in training mode normalises each micro-batch by its own statistics, so only BatchNorm-free
    networks (or BatchNorm in eval mode) get exactly the full-batch gradient.
    """

    def __init__(self, d: Optional[int] = None, collapsed: bool = False, impl: str = "auto") -> None:
        self.d = None if d is None else check_int(d, "d", low=0)
        self.collapsed, self.impl = collapsed, check_choice(impl, "impl", ops.IMPLS)
        self.joint: Optional[torch.Tensor] = None
        self._lamb: Optional[float] = None
        self._grad: Optional[torch.Tensor] = None

    def _joint(self, x1: torch.Tensor, x2: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        if self.d is None:
            check_value(mask is None, "mask is only supported for segmentation joints (d is not None)")
            return clustering_joint(x1, x2)
        return ops.joint(x1, x2, self.d, mask=mask, collapsed=self.collapsed, impl=self.impl)

    def reset(self) -> None:
        """Forget the accumulated joint and gradient (start a new batch)."""
        self.joint, self._lamb, self._grad = None, None, None

    def add(self, x1: torch.Tensor, x2: torch.Tensor, mask: Optional[torch.Tensor] = None) -> None:
        """Pass 1: adds one micro-batch's joint. x1, x2: (n, k, H, W) (or (n, k) for clustering)."""
        J = self._joint(x1.detach(), x2.detach(), None if mask is None else mask.detach())
        self.joint = J if self.joint is None else self.joint + J
        self._grad = None

    def all_reduce(self, group: Optional[dist.ProcessGroup] = None) -> None:
        """Sums the joint over all ranks; a no-op unless torch.distributed is initialised."""
        self._require_joint()
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.joint, op=dist.ReduceOp.SUM, group=group)
            self._grad = None

    def loss(self, lamb: float = 1.0) -> Tuple[torch.Tensor, torch.Tensor]:
        """The loss of everything added (and all-reduced): (loss, loss_no_lamb), detached. Also fixes lamb
        for ``backward`` and computes G = dL/dJ."""
        J = self._require_joint().detach().requires_grad_(True)
        ops.check_joint_values(J.detach())
        with torch.enable_grad():
            loss, loss_no_lamb = ops.mi(J, lamb, self.collapsed)
            (self._grad,) = torch.autograd.grad(loss, J)
        self._lamb = lamb
        return loss.detach(), loss_no_lamb.detach()

    def backward(self, x1: torch.Tensor, x2: torch.Tensor, mask: Optional[torch.Tensor] = None) -> None:
        """Pass 2: back-propagates the global dL/dJ through one micro-batch (recomputed with its graph), adding
        to the parameters' ``.grad``. Call ``loss`` first."""
        if self._grad is None:
            raise RuntimeError("call loss() after the last add() / all_reduce() and before backward()")
        J = self._joint(x1, x2, mask)
        scale = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        (J * (self._grad * scale).to(J.dtype)).sum().backward()

    def _require_joint(self) -> torch.Tensor:
        if self.joint is None:
            raise RuntimeError("no joint accumulated yet: call add() first")
        return self.joint
