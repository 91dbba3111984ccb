"""Matching and metrics computed from a confusion matrix (contingency table).

``conf[p, t]`` = #(pred = p, target = t), shape ``(num_pred, num_true)``. A mapping is an int64
CPU tensor of shape ``(num_pred,)``: ``mapping[p]`` is the true class that cluster ``p`` stands for.
All functions move ``conf`` to the host (it is tiny); they never see individual samples.
"""
from __future__ import annotations

import math
from typing import Union

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

ArrayLike = Union[torch.Tensor, np.ndarray]


def _conf_numpy(conf: ArrayLike, name: str = "conf") -> np.ndarray:
    """int64 numpy copy of a 2-D, non-negative count matrix; TypeError (dtype) or ValueError naming ``name``."""
    if isinstance(conf, torch.Tensor):
        conf = conf.detach().cpu().numpy()
    c = np.asarray(conf)
    if c.ndim != 2 or c.shape[0] < 1 or c.shape[1] < 1:
        raise ValueError(f"{name} must be a non-empty 2-D (num_pred, num_true) matrix, got shape {c.shape}")
    if not (np.issubdtype(c.dtype, np.integer) or np.issubdtype(c.dtype, np.floating)):
        raise TypeError(f"{name} must hold counts, got dtype {c.dtype}")
    if np.issubdtype(c.dtype, np.floating):
        if not np.all(np.isfinite(c)) or np.any(c != np.round(c)):
            raise ValueError(f"{name} must hold whole-number counts")
    if np.any(c < 0):
        raise ValueError(f"{name} must not hold negative counts")
    return c.astype(np.int64)


def _mapping_numpy(mapping: ArrayLike, num_pred: int, num_true: int) -> np.ndarray:
    m = mapping.detach().cpu().numpy() if isinstance(mapping, torch.Tensor) else np.asarray(mapping)
    if m.shape != (num_pred,):
        raise ValueError(f"mapping must have shape (num_pred,) = ({num_pred},), got {m.shape}")
    if not np.issubdtype(m.dtype, np.integer) or m.min() < 0 or m.max() >= num_true:
        raise ValueError(f"mapping must hold integer classes in [0, num_true={num_true})")
    return m.astype(np.int64)


def hungarian_match(conf: ArrayLike) -> torch.Tensor:
    """One-to-one cluster -> class mapping maximising matched counts (scipy linear_sum_assignment).

    Args:
        conf: ``(k, k)`` counts; num_pred must equal num_true (as in the original ``_hungarian_match``).

    Returns:
        int64 ``(k,)`` permutation ``mapping`` with ``mapping[p]`` = class of cluster ``p``.
    """
    c = _conf_numpy(conf)
    if c.shape[0] != c.shape[1]:
        raise ValueError(
            f"conf must be square for hungarian_match (num_pred == num_true), got shape {c.shape}; "
            "use many_to_one_match for overclustering"
        )
    rows, cols = linear_sum_assignment(c, maximize=True)
    mapping = np.empty(c.shape[0], dtype=np.int64)
    mapping[rows] = cols
    return torch.from_numpy(mapping)


def many_to_one_match(conf: ArrayLike) -> torch.Tensor:
    """Many-to-one mapping: each cluster -> the class it co-occurs with most (ties: lowest class).

    Fit it on the assignment data's ``conf`` and apply it to the test data's (as the original
    ``_original_match``). A cluster that never occurs maps to class 0.

    Args:
        conf: ``(num_pred, num_true)`` counts, any num_pred.

    Returns:
        int64 ``(num_pred,)`` mapping.
    """
    c = _conf_numpy(conf)
    return torch.from_numpy(np.argmax(c, axis=1).astype(np.int64))  # argmax keeps the first max


def remap_confusion(conf: ArrayLike, mapping: ArrayLike) -> torch.Tensor:
    """Merge rows of ``conf`` by ``mapping``: ``(num_pred, num_true)`` -> ``(num_true, num_true)``.

    ``out[c, t]`` = #(mapping[pred] = c, target = t). int64, CPU.
    """
    c = _conf_numpy(conf)
    m = _mapping_numpy(mapping, c.shape[0], c.shape[1])
    out = np.zeros((c.shape[1], c.shape[1]), dtype=np.int64)
    np.add.at(out, m, c)
    return torch.from_numpy(out)


def apply_mapping(pred: torch.Tensor, mapping: ArrayLike) -> torch.Tensor:
    """Map cluster ids to classes elementwise: any shape ``S`` in, int64 shape ``S`` out (same device)."""
    m = torch.as_tensor(mapping, dtype=torch.int64, device=pred.device)
    if m.dim() != 1:
        raise ValueError(f"mapping must be 1-D (num_pred,), got shape {tuple(m.shape)}")
    return m[pred.long()]


def accuracy(conf: ArrayLike, mapping: ArrayLike) -> float:
    """Fraction of counted samples whose mapped prediction equals the target (pooled, not per image).

    ``conf``: ``(num_pred, num_true)``; ``mapping``: ``(num_pred,)``. NaN when ``conf`` is all zero.
    """
    c = _conf_numpy(conf)
    m = _mapping_numpy(mapping, c.shape[0], c.shape[1])
    total = int(c.sum())
    if total == 0:
        return float("nan")
    return int(c[np.arange(c.shape[0]), m].sum()) / total


def per_class_iou(conf: ArrayLike, mapping: ArrayLike) -> torch.Tensor:
    """IoU of each true class after mapping, float64 ``(num_true,)``; NaN where a class is absent
    from both the mapped predictions and the targets."""
    r = remap_confusion(conf, mapping).numpy().astype(np.float64)
    tp = np.diag(r)
    union = r.sum(0) + r.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / np.where(union > 0, union, 1.0), np.nan)
    return torch.from_numpy(iou)


def mean_iou(conf: ArrayLike, mapping: ArrayLike) -> float:
    """Mean IoU over the true classes present (in targets or mapped predictions); NaN if none."""
    iou = per_class_iou(conf, mapping).numpy()
    return float(np.nanmean(iou)) if np.any(~np.isnan(iou)) else float("nan")


def _entropy(counts: np.ndarray, total: float) -> float:
    p = counts[counts > 0].astype(np.float64) / total
    return float(-(p * np.log(p)).sum())


def nmi(conf: ArrayLike) -> float:
    """Normalised mutual information (arithmetic mean of entropies, natural log), from ``conf``.

    Equals ``sklearn.metrics.normalized_mutual_info_score(target, pred)`` including its edge cases
    (both labelings constant -> 1.0; MI = 0 -> 0.0). Independent of any mapping.
    """
    c = _conf_numpy(conf)
    c = c[c.sum(1) > 0][:, c.sum(0) > 0]  # labels that never occur do not exist for sklearn
    if c.shape[0] == c.shape[1] and c.shape[0] <= 1:
        return 1.0
    n = float(c.sum())
    a, b = c.sum(1).astype(np.float64), c.sum(0).astype(np.float64)
    i, j = np.nonzero(c)
    nij = c[i, j].astype(np.float64)
    mi = float(np.sum(nij / n * (np.log(nij) + math.log(n) - np.log(a[i]) - np.log(b[j]))))
    mi = max(mi, 0.0)
    if mi == 0.0:
        return 0.0
    return mi / ((_entropy(a, n) + _entropy(b, n)) / 2.0)


def ari(conf: ArrayLike) -> float:
    """Adjusted Rand index from ``conf``, exact in Python integers (no overflow for huge pixel counts).

    Equals ``sklearn.metrics.adjusted_rand_score(target, pred)``, including 1.0 for empty input.
    """
    c = [[int(v) for v in row] for row in _conf_numpy(conf).tolist()]
    n = sum(map(sum, c))
    sum_sq = sum(v * v for row in c for v in row)
    rows_sq = sum(sum(row) ** 2 for row in c)
    cols_sq = sum(sum(col) ** 2 for col in zip(*c))
    # Pair confusion matrix as in sklearn.metrics.cluster.pair_confusion_matrix.
    tp = sum_sq - n
    fp = rows_sq - sum_sq
    fn = cols_sq - sum_sq
    tn = n * n - fp - fn - sum_sq
    if fn == 0 and fp == 0:
        return 1.0
    return 2.0 * (tp * tn - fn * fp) / ((tp + fn) * (fn + tn) + (tp + fp) * (fp + tn))
