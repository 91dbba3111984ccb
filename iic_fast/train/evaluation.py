"""Evaluation of the main head by the paper's protocol (reference section 5).

Per sub-head, a confusion matrix is accumulated on the device over the test data, and over the
assignment data in IID+ mode only (in IID mode the assignment data is the test data: the original
asserts it). Matching: Hungarian one-to-one when the head has gt_k clusters in IID mode, else
many-to-one (majority class per cluster) fit on the assignment data.

``test_acc`` is the sub-head with the lowest training loss (label-free; ``test_acc_selection`` says
so): the mean loss of the evaluation interval, or at the final evaluation with ``selection_passes``
the loss of the final weights in evaluation mode on fixed training pairs (``selection_losses``).
``test_acc_best_subhead`` is the original's per-epoch choice, the sub-head with the highest accuracy on
the assignment data. ``double_eval`` (the original's STL10 runs) first evaluates with the
network in training mode: BatchNorm uses batch statistics and updates its running statistics, which
the ordinary evaluation that follows then uses, as in the original's ``cluster_eval``.
"""
from __future__ import annotations

import contextlib
import os
from typing import Any, Callable, Dict, List, Optional

import torch
from torch import nn
from torch.utils.data import Dataset

from .. import data as D
from ..accumulate import JointAccumulator
from ..eval import ConfusionAccumulator, SubheadReport, apply_mapping, select_subheads
from .checkpoint import load
from .config import TrainConfig
from .data import RunData, build_data, eval_loader
from .report import plot_predictions
from .runtime import build_model, resolve_device
from .steps import PairNet, StepRunner

#: seed of the pairs on which ``selection_losses`` scores the sub-heads (any fixed value)
SELECTION_SEED = 20_251_201


class Evaluator:
    """Evaluates ``net``'s main head on ``data``'s test (and assignment) sets."""

    def __init__(self, net: nn.Module, data: RunData, config: TrainConfig, device: torch.device,
                 autocast: Callable[[], contextlib.AbstractContextManager]) -> None:
        self.net, self.data, self.config, self.device, self.autocast = net, data, config, device, autocast

    @property
    def match(self) -> str:
        c = self.config
        return "hungarian" if c.mode == "iid" and c.output_k_B == c.gt_k else "many_to_one"

    def _inputs(self, batch: tuple) -> tuple:
        """(network input, labels, mask or None) of an evaluation batch."""
        x = self.data.pairs.eval_transform(batch[0])
        return x, batch[1], batch[2] if self.data.segmentation else None

    @torch.no_grad()
    def predict(self, x: torch.Tensor, train_mode: bool = False) -> List[torch.Tensor]:
        """Main-head argmax of every sub-head: list of (n,) or (n, H, W) int64. ``train_mode`` runs
        the network in training mode (BatchNorm batch statistics, running statistics updated)."""
        was_training = self.net.training
        self.net.train(train_mode)
        try:
            with self.autocast():
                outs = self.net(x, head="B") if self.config.two_head else self.net(x)
        finally:
            self.net.train(was_training)
        return [o.argmax(1) for o in outs]

    @torch.no_grad()
    def selection_losses(self, passes: int) -> List[float]:
        """Each main-head sub-head's IIC loss (``lamb_B``) with the network in evaluation mode, as it
        predicts: one joint per sub-head over ``passes`` passes of the main head's training images in order,
        their pairs drawn by a generator of fixed seed, so that every evaluation (and a re-evaluation)
        scores the sub-heads on the same pairs. Label-free; less noisy than the training-window loss,
        which mixes a whole evaluation interval of weights and BatchNorm's batch statistics."""
        c = self.config
        runner = StepRunner(PairNet(self.net, c.two_head), segmentation=self.data.segmentation, d=c.d,
                            collapsed=c.collapsed, impl=c.impl, autocast=self.autocast)
        generator = torch.Generator().manual_seed(SELECTION_SEED)
        accs: List[JointAccumulator] = []
        was_training = self.net.training
        self.net.eval()
        try:
            for _ in range(passes):
                for raw in D.device_batches(eval_loader(c, self.data.train_main), self.device):
                    x1, x2, affine, mask = self.data.pair_batch(raw, generator)
                    o1, o2 = runner.outputs(x1, x2, affine, "B")
                    accs = accs or [JointAccumulator(c.d if self.data.segmentation else None, c.collapsed, c.impl)
                                    for _ in o1]
                    for acc, a, b in zip(accs, o1, o2):
                        acc.add(a, b, mask=mask)
        finally:
            self.net.train(was_training)
        return [float(acc.loss(c.lamb_B)[0]) for acc in accs]

    def confusions(self, dataset: Dataset, train_mode: bool = False) -> List[torch.Tensor]:
        """One (k_B, gt_k) confusion matrix per sub-head over ``dataset`` (``train_mode``: see predict)."""
        accs: List[ConfusionAccumulator] = []
        k_true = self.config.gt_k or 1  # no labels: one pseudo-class, so the matrices hold the cluster sizes
        for batch in D.device_batches(eval_loader(self.config, dataset), self.device):
            x, y, mask = self._inputs(batch)
            y = y if self.config.gt_k else torch.zeros_like(y)
            preds = self.predict(x, train_mode)
            if not accs:
                accs = [ConfusionAccumulator(self.config.output_k_B, k_true, self.device) for _ in preds]
            for acc, p in zip(accs, preds):
                acc.update(p, y, mask)
        return [a.compute() for a in accs]

    def _report(self, losses: List[float], train_mode: bool = False) -> SubheadReport:
        test = self.confusions(self.data.test, train_mode)
        same = self.config.mode == "iid" or self.data.assign is self.data.test
        fit = None if same else self.confusions(self.data.assign, train_mode)
        return select_subheads(losses, test, self.match, fit)

    def run(self, losses: List[float], selection: str = "lowest_loss") -> Dict[str, Any]:
        """Metrics of the main head; ``losses`` (one per sub-head) select the reported sub-head, and
        ``selection`` says what they are (the record's ``test_acc_selection``)."""
        if self.config.gt_k is None:
            return self._unlabelled(losses, selection)
        double: Dict[str, Any] = {}
        if self.config.double_eval:  # first: its BatchNorm updates feed the evaluation below
            r = self._report(losses, train_mode=True)
            double = {"double_eval_acc": r.selected.acc, "double_eval_acc_best_subhead": r.best.acc}
        report = self._report(losses)
        sel = report.selected
        return {
            "test_acc": sel.acc, "test_acc_selection": selection, "test_acc_best_subhead": report.best.acc,
            **double, "nmi": sel.nmi, "ari": sel.ari,
            "miou": sel.miou, "match": sel.match, "subhead": report.by_loss, "best_subhead": report.by_acc,
            "subhead_accs": report.accs, "subhead_losses": report.losses,
            "mapping": sel.mapping.tolist(), "per_class_iou": sel.per_class_iou.tolist(),
        }

    def _unlabelled(self, losses: List[float], selection: str) -> Dict[str, Any]:
        """Data without labels (gt_k None): the lowest-loss sub-head, its loss and its cluster sizes on
        the test data (pixels or images per cluster); the accuracy keys are None."""
        confs = self.confusions(self.data.test)
        sel = select_subheads(losses, confs, "many_to_one").by_loss
        return {"test_acc": None, "test_acc_selection": selection, "test_acc_best_subhead": None, "nmi": None,
                "ari": None, "miou": None, "match": None, "subhead": sel, "best_subhead": sel, "subhead_accs": None,
                "subhead_losses": list(losses), "mapping": list(range(self.config.output_k_B)),
                "per_class_iou": None, "loss": losses[sel], "cluster_sizes": confs[sel][:, 0].tolist()}

    def render(self, path: str, record: Dict[str, Any], n: int = 8) -> None:
        """predictions.png for the first ``n`` test samples, with the selected sub-head and mapping."""
        batch = next(iter(D.device_batches(eval_loader(self.config, self.data.test), self.device)))
        batch = tuple(t[:n] for t in batch)
        x, y, mask = self._inputs(batch)
        pred = apply_mapping(self.predict(x)[record["subhead"]], torch.tensor(record["mapping"]))
        acc = "no labels" if record["test_acc"] is None else f"test acc {record['test_acc']:.3f}"
        title = f"{self.config.preset}: {acc} (step {record['step']})"
        plot_predictions(D.transforms.as_float(batch[0]), pred, y, self.config.gt_k or self.config.output_k_B, path,
                         title, mask)


def evaluate_run(run_dir: str, checkpoint: str = "best", *, device: str = "auto",
                 data_root: Optional[str] = None) -> Dict[str, Any]:
    """Re-evaluates ``run_dir/<checkpoint>.pt`` ("best" or "latest") with the run's config.json; the
    sub-head is selected by the training losses stored in the checkpoint, whose config is used. Returns
    the metrics."""
    state = load(os.path.join(run_dir, f"{checkpoint}.pt"), map_location="cpu")
    config = TrainConfig.from_dict(state["config"])
    if data_root is not None:
        config.data_root = data_root
    dev = resolve_device(device)
    data = build_data(config, dev)
    model = build_model(config, data, dev)
    model.net.load_state_dict(state["net"])
    stats = state["stats"]
    losses = stats["last_losses"] or [0.0] * config.num_sub_heads
    result = Evaluator(model.net, data, config, dev, model.autocast).run(losses, stats.get("selection", "lowest_loss"))
    return {"run_dir": os.path.abspath(run_dir), "checkpoint": checkpoint, "preset": config.preset,
            "step": state["position"]["step"], **result}
