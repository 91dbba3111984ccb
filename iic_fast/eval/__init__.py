"""Evaluation: device-side confusion matrices, Hungarian / many-to-one matching, accuracy, NMI,
ARI, mIoU, and sub-head selection (lowest loss, label-free; and best by accuracy)."""
from .confusion import ConfusionAccumulator, confusion_matrix
from .evaluate import EvalResult, SubheadReport, evaluate, select_subheads
from .metrics import (
    accuracy,
    apply_mapping,
    ari,
    hungarian_match,
    many_to_one_match,
    mean_iou,
    nmi,
    per_class_iou,
    remap_confusion,
)

__all__ = [
    "ConfusionAccumulator",
    "EvalResult",
    "SubheadReport",
    "accuracy",
    "apply_mapping",
    "ari",
    "confusion_matrix",
    "evaluate",
    "hungarian_match",
    "many_to_one_match",
    "mean_iou",
    "nmi",
    "per_class_iou",
    "remap_confusion",
    "select_subheads",
]
