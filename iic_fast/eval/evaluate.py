"""One-call evaluation of a confusion matrix and sub-head selection (paper protocol, section 5)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch

from .metrics import (
    _conf_numpy,
    accuracy,
    ari,
    hungarian_match,
    many_to_one_match,
    mean_iou,
    nmi,
    per_class_iou,
)

ArrayLike = Union[torch.Tensor, np.ndarray]
MATCHES = ("auto", "hungarian", "many_to_one")


@dataclass
class EvalResult:
    """Metrics of one head / sub-head. ``mapping``: int64 ``(num_pred,)`` cluster -> class;
    ``per_class_iou``: float64 ``(num_true,)``. NMI and ARI use the raw (unmapped) clusters."""

    acc: float
    nmi: float
    ari: float
    miou: float
    mapping: torch.Tensor
    match: str
    num_samples: int
    per_class_iou: torch.Tensor = field(repr=False)

    def to_dict(self) -> Dict[str, Any]:
        """JSON-friendly dict (tensors as lists, NaN as None)."""
        clean = lambda v: None if isinstance(v, float) and math.isnan(v) else v  # noqa: E731
        return {
            "acc": clean(self.acc),
            "nmi": clean(self.nmi),
            "ari": clean(self.ari),
            "miou": clean(self.miou),
            "mapping": self.mapping.tolist(),
            "match": self.match,
            "num_samples": self.num_samples,
            "per_class_iou": [clean(float(v)) for v in self.per_class_iou.tolist()],
        }


def _resolve_match(match: str, shape: tuple) -> str:
    if match not in MATCHES:
        raise ValueError(f"match must be one of {MATCHES}, got {match!r}")
    if match == "auto":
        return "hungarian" if shape[0] == shape[1] else "many_to_one"
    return match


def evaluate(
    conf: ArrayLike, match: str = "auto", fit_conf: Optional[ArrayLike] = None
) -> EvalResult:
    """Accuracy, NMI, ARI and mIoU of ``conf`` under a cluster -> class mapping.

    Args:
        conf: ``(num_pred, num_true)`` counts of the data to score (the test data).
        match: ``"hungarian"`` (one-to-one, num_pred == num_true; IID), ``"many_to_one"`` (majority
            class per cluster; IID+ / overclustering) or ``"auto"`` (hungarian when square).
        fit_conf: ``(num_pred, num_true)`` counts of the assignment data the mapping is fit on;
            default ``conf`` itself (the paper's IID mode, assignment = test).

    Returns:
        :class:`EvalResult`.
    """
    c = _conf_numpy(conf)
    f = c if fit_conf is None else _conf_numpy(fit_conf, "fit_conf")
    if f.shape != c.shape:
        raise ValueError(f"fit_conf must have the shape of conf {c.shape}, got {f.shape}")
    kind = _resolve_match(match, c.shape)
    mapping = hungarian_match(f) if kind == "hungarian" else many_to_one_match(f)
    return EvalResult(
        acc=accuracy(c, mapping),
        nmi=nmi(c),
        ari=ari(c),
        miou=mean_iou(c, mapping),
        mapping=mapping,
        match=kind,
        num_samples=int(c.sum()),
        per_class_iou=per_class_iou(c, mapping),
    )


@dataclass
class SubheadReport:
    """Per-sub-head results plus the two selections.

    ``by_loss``: index of the lowest-loss sub-head (label-free; the paper's Table 1 protocol).
    ``by_acc``: index of the best sub-head by accuracy on the assignment data (the original code's
    ``best``; uses labels). ``fit_accs``: those assignment-data accuracies.
    """

    results: List[EvalResult]
    losses: List[float]
    fit_accs: List[float]
    by_loss: int
    by_acc: int

    @property
    def selected(self) -> EvalResult:
        """Result of the sub-head chosen by lowest loss."""
        return self.results[self.by_loss]

    @property
    def best(self) -> EvalResult:
        """Result of the sub-head chosen by accuracy."""
        return self.results[self.by_acc]

    @property
    def accs(self) -> List[float]:
        return [r.acc for r in self.results]

    def to_dict(self) -> Dict[str, Any]:
        """JSON-friendly summary: both selections, per-sub-head accuracies, mean/std/worst."""
        accs = np.asarray(self.accs, dtype=np.float64)
        return {
            "by_loss": self.by_loss,
            "by_acc": self.by_acc,
            "acc_by_loss": self.selected.acc,
            "acc_by_acc": self.best.acc,
            "accs": self.accs,
            "losses": self.losses,
            "avg_acc": float(np.mean(accs)),
            "std_acc": float(np.std(accs)),
            "worst_acc": float(np.min(accs)),
            "selected": self.selected.to_dict(),
            "best": self.best.to_dict(),
        }


def select_subheads(
    losses: Sequence[Union[float, torch.Tensor]],
    confs: Sequence[ArrayLike],
    match: str = "auto",
    fit_confs: Optional[Sequence[ArrayLike]] = None,
) -> SubheadReport:
    """Evaluate ``h`` sub-heads and pick one by lowest loss and one by best accuracy.

    Args:
        losses: ``h`` scalar losses (e.g. IIC loss summed over the data in eval mode); NaN/inf count
            as worst. Ties go to the lowest index.
        confs: ``h`` test confusion matrices, each ``(num_pred, num_true)``.
        match: as in :func:`evaluate`.
        fit_confs: optional ``h`` assignment-data matrices; mappings and ``by_acc`` use them
            (default: ``confs``).

    Returns:
        :class:`SubheadReport`.
    """
    h = len(confs)
    if h == 0:
        raise ValueError("confs must hold at least one sub-head")
    if len(losses) != h:
        raise ValueError(f"losses must have one entry per sub-head ({h}), got {len(losses)}")
    if fit_confs is not None and len(fit_confs) != h:
        raise ValueError(f"fit_confs must have one entry per sub-head ({h}), got {len(fit_confs)}")
    fits = list(confs) if fit_confs is None else list(fit_confs)
    loss_list = [float(torch.as_tensor(v).detach().cpu().reshape(())) for v in losses]
    results = [evaluate(c, match, f) for c, f in zip(confs, fits)]
    fit_accs = [accuracy(f, r.mapping) for f, r in zip(fits, results)]
    key_loss = [v if math.isfinite(v) else math.inf for v in loss_list]
    by_loss = int(np.argmin(key_loss))
    by_acc = int(np.argmax([a if not math.isnan(a) else -math.inf for a in fit_accs]))
    return SubheadReport(results, loss_list, fit_accs, by_loss, by_acc)
