"""Confusion matrices accumulated on the device of the predictions.

Convention used throughout ``iic_fast.eval``: ``conf[p, t]`` counts the samples (or pixels) with
predicted cluster ``p`` and ground-truth class ``t``; shape ``(num_pred, num_true)``, dtype int64.
"""
from __future__ import annotations

from typing import Optional, Union

import numpy as np
import torch

from .._checks import check_int

ArrayLike = Union[torch.Tensor, np.ndarray]


def _as_int_tensor(x: ArrayLike, name: str) -> torch.Tensor:
    """Integer (or bool) tensor view of ``x``; TypeError naming ``name`` for any other dtype."""
    t = torch.as_tensor(x)
    if t.is_floating_point() or t.is_complex():
        raise TypeError(f"{name} must hold integer labels, got dtype {t.dtype}")
    return t


def confusion_matrix(
    pred: ArrayLike,
    target: ArrayLike,
    num_pred: int,
    num_true: int,
    mask: Optional[ArrayLike] = None,
) -> torch.Tensor:
    """Count (predicted cluster, true class) pairs with one ``bincount`` on ``pred``'s device.

    Args:
        pred: integer predictions, any shape ``S`` (flattened), values in ``[0, num_pred)``.
        target: integer labels, shape ``S``; values ``< 0`` are ignored, others must be ``< num_true``.
        num_pred: number of predicted clusters.
        num_true: number of ground-truth classes.
        mask: optional, shape ``S``; bool (or integer, nonzero = keep). Entries with mask False are
            ignored (their pred/target values are not checked).

    Returns:
        int64 tensor ``(num_pred, num_true)`` on ``pred``'s device.

    Raises:
        TypeError: a non-integer dtype or count; ValueError: bad shapes, sizes, or labels out of range (names the
            argument).
    """
    num_pred = check_int(num_pred, "num_pred", low=1)
    num_true = check_int(num_true, "num_true", low=1)
    pred = _as_int_tensor(pred, "pred")
    target = _as_int_tensor(target, "target")
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target must have the same shape, got pred {tuple(pred.shape)} "
            f"and target {tuple(target.shape)}"
        )
    device = pred.device
    p = pred.reshape(-1).to(torch.int64)
    t = target.reshape(-1).to(device=device, dtype=torch.int64)
    valid = t >= 0
    if mask is not None:
        m = _as_int_tensor(mask, "mask")
        if m.shape != target.shape:
            raise ValueError(
                f"mask must have the shape of target {tuple(target.shape)}, got {tuple(m.shape)}"
            )
        valid &= m.reshape(-1).to(device) != 0

    # Range check on the kept entries (one host sync; evaluation is not the hot path).
    if p.numel() > 0:
        bad_pred = valid & ((p < 0) | (p >= num_pred))
        bad_true = valid & (t >= num_true)
        flags = torch.stack([bad_pred.any(), bad_true.any()]).tolist()
        if flags[0]:
            raise ValueError(f"pred has values outside [0, num_pred={num_pred})")
        if flags[1]:
            raise ValueError(f"target has values >= num_true={num_true} (use < 0 to ignore)")

    # Ignored entries go to one extra trailing bin, dropped afterwards: no data-dependent shapes.
    size = num_pred * num_true
    idx = torch.where(valid, p * num_true + t, torch.full_like(p, size))
    counts = torch.bincount(idx, minlength=size + 1)
    return counts[:size].reshape(num_pred, num_true)


class ConfusionAccumulator:
    """Running confusion matrix over batches; stores only the ``(num_pred, num_true)`` counts.

    Example::

        acc = ConfusionAccumulator(k, k, device="cuda")
        for x, y, m in loader:
            acc.update(net(x).argmax(1), y, m)
        conf = acc.compute()
    """

    def __init__(
        self, num_pred: int, num_true: int, device: Union[str, torch.device, None] = None
    ) -> None:
        self.num_pred = check_int(num_pred, "num_pred", low=1)
        self.num_true = check_int(num_true, "num_true", low=1)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.matrix = torch.zeros(
            self.num_pred, self.num_true, dtype=torch.int64, device=self.device
        )

    def update(
        self, pred: ArrayLike, target: ArrayLike, mask: Optional[ArrayLike] = None
    ) -> None:
        """Add one batch; ``pred``/``target``/``mask`` as in :func:`confusion_matrix` (any shape ``S``)."""
        pred = torch.as_tensor(pred).to(self.device)
        self.matrix += confusion_matrix(pred, target, self.num_pred, self.num_true, mask)

    def reset(self) -> None:
        """Zero the counts."""
        self.matrix.zero_()

    @property
    def total(self) -> int:
        """Number of counted (unmasked) samples or pixels."""
        return int(self.matrix.sum().item())

    def all_reduce(self) -> None:
        """Sum the counts over ranks when ``torch.distributed`` is initialised (no-op otherwise)."""
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.matrix)

    def compute(self) -> torch.Tensor:
        """int64 ``(num_pred, num_true)`` copy of the counts, on the accumulator's device."""
        return self.matrix.clone()
