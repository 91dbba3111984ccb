"""One IIC training step: pairs -> two forwards -> loss averaged over sub-heads -> gradients.

Two paths with the same gradient (to float rounding):

- ``direct``: the whole batch in one graph; the loss of every sub-head, averaged, back-propagated.
- ``accumulated``: micro-batches through ``JointAccumulator`` (exact large batch in the memory of one
  micro-batch; also the only path under DDP, where the joints are all-reduced so every rank computes
  the global batch's loss). Pass 1 runs without a graph and with BatchNorm running statistics frozen
  (restored afterwards) so they are updated once per micro-batch, as in the direct path.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from ..accumulate import JointAccumulator
from ..losses import clustering_loss, perform_affine_tf, segmentation_loss


class NonFiniteLossError(RuntimeError):
    """The loss or the gradients became NaN/inf; training stops without writing a checkpoint."""


class PairNet(nn.Module):
    """Runs the network on both images of a pair in one ``forward`` (two separate calls inside, as
    the original, so BatchNorm sees each batch alone); one forward per backward keeps DDP happy."""

    def __init__(self, net: nn.Module, two_head: bool) -> None:
        super().__init__()
        self.net, self.two_head = net, two_head

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, head: str) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        if self.two_head:
            return self.net(x1, head=head), self.net(x2, head=head)
        return self.net(x1), self.net(x2)


@contextlib.contextmanager
def frozen_bn_stats(net: nn.Module):
    """Restores every BatchNorm's running statistics on exit (for the graph-free pass 1)."""
    saved = [(m, {k: v.clone() for k, v in m.named_buffers(recurse=False)})
             for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    try:
        yield
    finally:
        with torch.no_grad():
            for m, buffers in saved:
                for k, v in buffers.items():
                    getattr(m, k).copy_(v)


class StepRunner:
    """Computes one step's loss and gradients for a head. ``forward(x1, x2, head)`` is the (possibly
    DDP-wrapped) ``PairNet``; ``autocast`` a context factory for the network's precision."""

    def __init__(self, forward: nn.Module, *, segmentation: bool, d: int, collapsed: bool, impl: str,
                 autocast: Callable[[], contextlib.AbstractContextManager]) -> None:
        self.forward, self.segmentation = forward, segmentation
        self.d, self.collapsed, self.impl = d, collapsed, impl
        self.autocast = autocast

    def outputs(self, x1: torch.Tensor, x2: torch.Tensor, affine: Optional[torch.Tensor],
                head: str) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        """Per-sub-head fp32 outputs, x2's warped into x1's frame for segmentation."""
        with self.autocast():
            o1, o2 = self.forward(x1, x2, head)
        o1 = [o.float() for o in o1]
        o2 = [perform_affine_tf(o.float(), affine) if self.segmentation else o.float() for o in o2]
        return o1, o2

    def _loss(self, a: torch.Tensor, b: torch.Tensor, mask: Optional[torch.Tensor], lamb: float):
        if self.segmentation:
            return segmentation_loss(a, b, d=self.d, lamb=lamb, mask=mask, collapsed=self.collapsed,
                                     impl=self.impl)
        return clustering_loss(a, b, lamb)

    def direct(self, batch: Sequence[Optional[torch.Tensor]], head: str, lamb: float,
               backward: Callable[[torch.Tensor], None]) -> List[Tuple[float, float]]:
        """Whole-batch step. ``backward(loss)`` back-propagates (through a GradScaler if any).
        Returns (loss, loss_no_lamb) per sub-head."""
        x1, x2, affine, mask = batch
        o1, o2 = self.outputs(x1, x2, affine, head)
        try:
            pairs = [self._loss(a, b, mask, lamb) for a, b in zip(o1, o2)]
        except ValueError as error:
            _raise_if_nonfinite(o1 + o2, error)
            raise
        loss = torch.stack([p[0] for p in pairs]).mean()
        _check_finite(loss, head)
        backward(loss)
        return [(float(p[0].detach()), float(p[1].detach())) for p in pairs]

    def accumulated(self, batch: Sequence[Optional[torch.Tensor]], head: str, lamb: float,
                    micro_batch: int, net: nn.Module, scale: Callable[[torch.Tensor], torch.Tensor],
                    no_sync: Callable[[], contextlib.AbstractContextManager]) -> List[Tuple[float, float]]:
        """Exact large-batch step in micro-batches of ``micro_batch`` pairs (see the module docstring).
        ``scale`` is applied to the back-propagated output gradients (a GradScaler's ``scale``, or
        identity); ``no_sync`` defers DDP's gradient all-reduce to the last micro-batch."""
        n = batch[0].shape[0]
        chunks = [slice(i, min(i + micro_batch, n)) for i in range(0, n, micro_batch)]
        part = lambda t, s: None if t is None else t[s]  # noqa: E731
        accs: List[JointAccumulator] = []
        with torch.no_grad(), frozen_bn_stats(net):
            for s in chunks:
                x1, x2, affine, mask = (part(t, s) for t in batch)
                o1, o2 = self.outputs(x1, x2, affine, head)
                if not accs:
                    accs = [JointAccumulator(self.d if self.segmentation else None, self.collapsed, self.impl)
                            for _ in o1]
                try:
                    for acc, a, b in zip(accs, o1, o2):
                        acc.add(a, b, mask=mask)
                except ValueError as error:
                    _raise_if_nonfinite(o1 + o2, error)
                    raise
        for acc in accs:
            acc.all_reduce()
        losses = [acc.loss(lamb) for acc in accs]
        _check_finite(torch.stack([l for l, _ in losses]).mean(), head)
        heads = len(accs)
        for i, s in enumerate(chunks):
            x1, x2, affine, mask = (part(t, s) for t in batch)
            with no_sync() if i < len(chunks) - 1 else contextlib.nullcontext():
                o1, o2 = self.outputs(x1, x2, affine, head)
                # dL/d(outputs) from each sub-head's accumulator, then one backward through the net
                leaves = [o.detach().requires_grad_(True) for o in o1 + o2]
                for acc, a, b in zip(accs, leaves[:heads], leaves[heads:]):
                    acc.backward(a, b, mask=mask)
                grads = [scale(leaf.grad / heads) for leaf in leaves]
                torch.autograd.backward(o1 + o2, grads)
        return [(float(l), float(ln)) for l, ln in losses]


def worse_half(losses: Sequence[float]) -> List[int]:
    """Indices (ascending) of the sub-heads in the worse half by training loss (the higher ones; the
    middle one of an odd count too; never the best, so none of one): those a label-free restart
    re-initialises."""
    order = sorted(range(len(losses)), key=lambda i: (losses[i], i))
    return sorted(order[max(1, len(losses) // 2):])


def restart_subheads(head: nn.Module, indices: Sequence[int], initial: Dict[str, torch.Tensor],
                     optimizer: torch.optim.Optimizer) -> None:
    """Puts the sub-heads ``indices`` of ``head`` (a ``SubHeads``) back to their initial weights
    (``initial``: the head's state_dict at construction, the same on every rank) and drops their
    optimiser state, so they train afresh on the current trunk."""
    with torch.no_grad():
        for i in indices:
            for name, p in head.heads[i].named_parameters():
                p.copy_(initial[f"heads.{i}.{name}"])
                optimizer.state.pop(p, None)


def _check_finite(loss: torch.Tensor, head: str) -> None:
    if not bool(torch.isfinite(loss)):
        raise NonFiniteLossError(f"the loss of head {head} is {float(loss)}")


def _raise_if_nonfinite(outputs: Sequence[torch.Tensor], error: ValueError) -> None:
    """Turns the loss's input check into NonFiniteLossError when the network produced NaN/inf."""
    if not all(bool(torch.isfinite(o).all()) for o in outputs):
        raise NonFiniteLossError("the network produced non-finite outputs") from error
