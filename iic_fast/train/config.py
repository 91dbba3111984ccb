"""Training configuration: one flat dataclass and ``key=value`` overrides (the CLI's ``--set``); the
named presets are in ``presets.py``.

Semantics shared by every preset:

- **step**: one optimiser step of one head on one batch of ``batch_size`` pairs.
- **batch_size**: pairs per step, the original's ``batch_sz``. With ``repeats`` r > 1 (the original's
  ``num_dataloaders`` for clustering, or segmentation sample repeats) each step loads
  ``batch_size // r`` images and pairs each with r independently transformed twins.
- **epoch / head_schedule**: an epoch is a list of head passes; a pass of head h is ``epoch_steps``
  steps (0: one pass over h's training set).
  ``alternate``: one head per epoch, A, B, A, B, ... (the schedule of the runs behind the paper);
  ``A_then_B`` / ``B_then_A``: ``head_A_epochs`` passes of A and ``head_B_epochs`` of B inside each
  epoch (the released scripts); ``single``: single-head nets (IID+).
  ``head_A_warmup_epochs`` w > 0 (two-head nets) first trains head A alone for w epochs of one pass
  each, so the main head starts on a trunk already shaped by overclustering (see the digits preset).
  Evaluation follows every epoch (or every ``eval_every`` steps), and the end of training.
- **mode**: ``iid`` trains and evaluates as the paper's fully unsupervised runs (for the paper's
  datasets transductively on the training images; for the embedded sets on a held-out test split,
  Hungarian one-to-one matching); ``iid+`` is the semi-supervised overclustering protocol (many-to-one
  mapping fit on the assignment split, scored on the test split).
- **budgets**: training stops at the first of ``max_epochs``, ``max_steps``, ``max_minutes`` (0 = none).
"""
from __future__ import annotations

import ast
import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

from ..data import registry

SCHEDULES = ("alternate", "A_then_B", "B_then_A", "single")
LR_SCHEDULES = ("constant", "cosine")
AMP_MODES = ("auto", "off", "bf16", "fp16")


@dataclass
class TrainConfig:
    """Everything a run needs; ``to_dict`` is what ``config.json`` holds. See the module docstring."""

    preset: str = "textures3"
    dataset: str = "textures3"
    mode: str = "iid"
    data_root: Optional[str] = None
    # keyword arguments of the dataset's partitions builder (e.g. COCO's channel_order, unlabelled_as_sky)
    dataset_options: Dict[str, Any] = field(default_factory=dict)
    gt_k: Optional[int] = 3  # ground-truth classes; None: no labels (folder data), no accuracy
    input_size: int = 64  # segmentation crop side; clustering inputs come from the pair preset
    n_train: int = 512  # Textures-3 (embedded set only): training mosaics of input_size,
    n_test: int = 128  # and test mosaics of test_size
    test_size: int = 64
    # network
    arch: str = "SmallSegNetTwoHead"
    output_k_A: Optional[int] = 12  # None for single-head nets
    output_k_B: int = 3  # main head (two-head nets) or the single head's k
    num_sub_heads: int = 1
    num_sub_heads_A: Optional[int] = None  # head A's sub-heads (None: num_sub_heads); only B's are selected from
    batchnorm_track: bool = True
    border_ring: bool = False  # segmentation nets: the original head's ring of zero logits (paper presets)
    # pairs: overrides of the data package's pair preset (e.g. {"flip_p": 0.5}) and repeats
    pairs: Dict[str, Any] = field(default_factory=dict)
    repeats: int = 1
    # loss
    d: int = 5
    collapsed: bool = False
    impl: str = "auto"
    lamb_A: float = 1.0
    lamb_B: float = 1.0
    # label-free restarts: at the first evaluation past each fraction of the schedule (its horizon, or the longest
    # time plan when shorter), the worse half of the main head's sub-heads (by training loss) go back to their
    # initial weights and train afresh
    subhead_restarts: List[float] = field(default_factory=list)
    # > 0: the final evaluation reports the sub-head of lowest IIC loss with the net in evaluation mode (as it
    # predicts) on this many passes over the main head's training pairs, fixed augmentations; 0: training-window loss
    selection_passes: int = 0
    # > 1: k-means' n_init for IIC (train/candidates.py): that many independent starts train candidate_steps steps
    # each (to the first evaluation at or past them); the one of lowest evaluation-mode loss goes on to the end.
    # candidate_steps 0: every start is a whole run in its share of max_minutes (1/candidates; candidate_jobs/candidates
    # when that many train at once), and the best one is the result
    candidates: int = 1
    candidate_steps: int = 0
    candidate_jobs: int = 1  # candidates trained at once, each in a process with its share of the threads
    # optimisation
    lr: float = 4e-4
    lr_schedule: str = "constant"  # the paper's; "cosine" decays to 0 over max_steps
    batch_size: int = 16
    micro_batch: int = 0  # 0: whole batch in one pass; else exact large batch via JointAccumulator
    head_schedule: str = "alternate"
    head_A_epochs: int = 1
    head_B_epochs: int = 1
    head_A_warmup_epochs: int = 0  # epochs of head A alone before head_schedule starts
    epoch_steps: int = 0
    max_epochs: int = 0
    max_steps: int = 0
    max_minutes: float = 0.0
    eval_every: int = 0
    eval_batch_size: int = 0  # 0: images per step
    double_eval: bool = False  # also evaluate in training mode first, as the original's STL10 runs
    log_every: int = 10  # steps per train record in metrics.jsonl
    # runtime
    amp: str = "auto"
    channels_last: bool = True  # NHWC activations (same numbers; see runtime.use_channels_last)
    device: str = "auto"
    seed: int = 0
    num_workers: int = -1  # -1: the data package's default
    progress: bool = True
    tensorboard: bool = False  # also log metrics and predictions to RUN_DIR/tensorboard (train/tensorboard.py)

    @property
    def task(self) -> str:
        """"segmentation" or "clustering", from the dataset's registry entry."""
        return registry.get(self.dataset).task

    @property
    def two_head(self) -> bool:
        return self.output_k_A is not None

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "TrainConfig":
        """Inverse of ``to_dict``; unknown keys raise ValueError."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown config key(s) {unknown}")
        return cls(**values).validate()

    def validate(self) -> "TrainConfig":
        """Raises ValueError naming the first inconsistent field; returns self."""
        spec = registry.get(self.dataset)  # unknown name: ValueError listing the registered datasets
        if self.gt_k != spec.num_classes(self):
            raise ValueError(f"gt_k must be the {self.dataset} classes ({spec.num_classes(self)}), got {self.gt_k}")
        if self.gt_k is not None and self.gt_k < 1:
            raise ValueError(f"gt_k must be >= 1 or None, got {self.gt_k}")
        if self.mode not in ("iid", "iid+"):
            raise ValueError(f"mode must be 'iid' or 'iid+', got {self.mode!r}")
        if self.head_schedule not in SCHEDULES:
            raise ValueError(f"head_schedule must be one of {SCHEDULES}, got {self.head_schedule!r}")
        if (self.head_schedule == "single") == self.two_head:
            raise ValueError("head_schedule 'single' goes with output_k_A = None (single-head nets), "
                             "and only with them")
        if self.num_sub_heads_A is not None and not (self.two_head and self.num_sub_heads_A >= 1):
            raise ValueError(f"num_sub_heads_A must be >= 1 and needs a two-head net, got {self.num_sub_heads_A}")
        if self.head_A_warmup_epochs and not self.two_head:
            raise ValueError("head_A_warmup_epochs needs a two-head net (output_k_A set)")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if self.log_every < 1:
            raise ValueError(f"log_every must be >= 1, got {self.log_every}")
        if self.amp not in AMP_MODES:
            raise ValueError(f"amp must be one of {AMP_MODES}, got {self.amp!r}")
        if self.repeats < 1 or self.batch_size < self.repeats or self.batch_size % self.repeats:
            raise ValueError(f"batch_size ({self.batch_size}) must be a positive multiple of repeats "
                             f"({self.repeats})")
        if self.micro_batch < 0:
            raise ValueError(f"micro_batch must be >= 0, got {self.micro_batch}")
        for name in ("max_epochs", "max_steps", "epoch_steps", "eval_every", "head_A_epochs",
                     "head_B_epochs", "head_A_warmup_epochs", "selection_passes", "candidate_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.candidates < 1:
            raise ValueError(f"candidates must be >= 1, got {self.candidates}")
        if self.candidate_jobs < 1 or self.candidates % self.candidate_jobs:
            raise ValueError(f"candidate_jobs must be >= 1 and divide candidates ({self.candidates}), "
                             f"got {self.candidate_jobs}")
        if any(not 0 < f < 1 for f in self.subhead_restarts):
            raise ValueError(f"subhead_restarts must be fractions in (0, 1) of the schedule, got {self.subhead_restarts}")
        if self.max_minutes < 0 or self.lr <= 0:
            raise ValueError("max_minutes must be >= 0 and lr > 0")
        return self


def _field_types() -> Dict[str, Any]:
    return {f.name: f for f in dataclasses.fields(TrainConfig)}


def parse_value(text: str) -> Any:
    """A ``--set`` value: a Python/JSON literal (1e-4, true, none, [1, 2], {"a": 1}) or a plain string."""
    lowered = {"true": True, "false": False, "none": None, "null": None}
    if text.strip().lower() in lowered:
        return lowered[text.strip().lower()]
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        try:
            return json.loads(text)
        except ValueError:
            return text


def _coerce(name: str, value: Any, current: Any) -> Any:
    """Fits a parsed value to the field's current type (int -> float for floats, str for strings)."""
    if value is None or current is None:
        return value
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{name} takes true/false, got {value!r}")
        return value
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(current, str):
        return str(value)
    if not isinstance(value, type(current)):
        raise ValueError(f"{name} takes a {type(current).__name__}, got {value!r}")
    return value


def apply_overrides(config: TrainConfig, assignments: Sequence[str]) -> TrainConfig:
    """Applies ``key=value`` strings (``pairs.flip_p=0.0`` sets one entry of the dict field ``pairs``)
    and returns a new validated config. Unknown keys raise ValueError listing the valid ones."""
    values = config.to_dict()
    fields = _field_types()
    for item in assignments:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep:
            raise ValueError(f"--set expects key=value, got {item!r}")
        head, _, sub = key.partition(".")
        if head not in fields:
            raise ValueError(f"unknown config key {head!r}; keys: {', '.join(sorted(fields))}")
        value = parse_value(text)
        if sub:
            if not isinstance(values[head], dict):
                raise ValueError(f"{head} is not a dict field; use {head}=value")
            values[head] = {**values[head], sub: value}
        else:
            values[head] = _coerce(head, value, values[head])
    return TrainConfig.from_dict(values)
