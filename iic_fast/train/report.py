"""What a run reports: the run-directory outputs ``metrics.jsonl`` (one JSON object per line), ``summary.json``,
``plots.png`` (loss and accuracy curves) and ``predictions.png`` (image / prediction / ground truth), rendered
with matplotlib's Agg backend (no display needed); and the progress bar."""
from __future__ import annotations

import json
import math
import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch


def _clean(value: Any) -> Any:
    """JSON-safe copy: NaN/inf -> None, tensors and numpy scalars -> Python numbers."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return _clean(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps(record: Dict[str, Any]) -> str:
    """One JSON line (strict JSON: NaN/inf become null)."""
    return json.dumps(_clean(record), allow_nan=False, sort_keys=False)


class MetricsLog:
    """Appends records to ``metrics.jsonl``; ``truncate(step)`` drops records past a resumed
    checkpoint's step so a resumed run's file equals an uninterrupted run's."""

    def __init__(self, path: str) -> None:
        self.path = path

    def append(self, record: Dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(dumps(record) + "\n")

    def read(self) -> List[Dict[str, Any]]:
        if not os.path.exists(self.path):
            return []
        with open(self.path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]

    def truncate(self, step: int) -> None:
        kept = [r for r in self.read() if r.get("step", 0) <= step]
        tmp = self.path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(dumps(r) + "\n" for r in kept)
        os.replace(tmp, self.path)


def write_json(path: str, obj: Dict[str, Any]) -> None:
    """Pretty JSON written atomically (temp file + rename)."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(_clean(obj), f, indent=2, allow_nan=False)
        f.write("\n")
    os.replace(tmp, path)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(records: Sequence[Dict[str, Any]], path: str, title: str) -> None:
    """plots.png: training loss per head (and without lambda) and test accuracy against steps."""
    plt = _pyplot()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    train = [r for r in records if r.get("kind") == "train"]
    for head in ("A", "B"):
        pts = [(r["step"], r[f"loss_{head}"]) for r in train if r.get(f"loss_{head}") is not None]
        if pts:
            ax_loss.plot(*zip(*pts), label=f"head {head}")
        pts = [(r["step"], r[f"loss_no_lamb_{head}"]) for r in train
               if r.get(f"loss_no_lamb_{head}") is not None]
        if pts:
            ax_loss.plot(*zip(*pts), ls="--", label=f"head {head}, no lambda (-MI)")
    ax_loss.set(xlabel="step", ylabel="IIC loss", title="training loss")
    evals = [r for r in records if r.get("kind") == "eval"]
    if evals:
        steps = [r["step"] for r in evals]
        ax_acc.plot(steps, [r["test_acc"] for r in evals], marker="o", label="sub-head by lowest loss")
        ax_acc.plot(steps, [r["test_acc_best_subhead"] for r in evals], ls="--", label="best sub-head")
    ax_acc.set(xlabel="step", ylabel="test accuracy", title="evaluation", ylim=(0, 1))
    for ax in (ax_loss, ax_acc):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _display(img: torch.Tensor) -> np.ndarray:
    """(C, H, W) float in [0, 1] -> something imshow takes: grey, RGB, or the first 3 channels."""
    x = img.detach().float().cpu().clamp(0, 1).numpy()
    return x[0] if x.shape[0] in (1, 2) else np.moveaxis(x[:3], 0, -1)


def plot_predictions(images: torch.Tensor, preds: torch.Tensor, labels: torch.Tensor, num_classes: int,
                     path: str, title: str, masks: Optional[torch.Tensor] = None) -> None:
    """predictions.png. Segmentation (labels (n, H, W)): rows image / prediction / ground truth, the
    prediction mapped to classes and masked pixels shown dark. Clustering (labels (n,)): one row of
    images titled with the mapped prediction and the true class."""
    plt = _pyplot()
    n = images.shape[0]
    if labels.dim() == 1:
        fig, axes = plt.subplots(1, n, figsize=(1.3 * n, 1.8), squeeze=False)
        for i in range(n):
            ax = axes[0, i]
            ax.imshow(_display(images[i]), cmap="gray")
            ok = int(preds[i]) == int(labels[i])
            ax.set_title(f"p {int(preds[i])} / t {int(labels[i])}", fontsize=7, color="green" if ok else "red")
            ax.axis("off")
    else:
        fig, axes = plt.subplots(3, n, figsize=(1.8 * n, 5.6), squeeze=False)
        show = dict(cmap="viridis", vmin=-1, vmax=num_classes - 1, interpolation="nearest")
        for i in range(n):
            valid = masks[i].bool() if masks is not None else torch.ones_like(labels[i], dtype=torch.bool)
            pred = torch.where(valid, preds[i], torch.full_like(preds[i], -1))
            lab = torch.where(valid & (labels[i] >= 0), labels[i], torch.full_like(labels[i], -1))
            axes[0, i].imshow(_display(images[i]), cmap="gray")
            axes[1, i].imshow(pred.cpu().numpy(), **show)
            axes[2, i].imshow(lab.cpu().numpy(), **show)
            for ax in axes[:, i]:
                ax.set_xticks([]), ax.set_yticks([])
        for ax, name in zip(axes[:, 0], ("image", "prediction", "ground truth")):
            ax.set_ylabel(name)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


class Progress:
    """The training progress bar (tqdm; nothing shown when not ``enabled``): its total is the planned steps
    and follows every new plan, its postfix the step's head and loss and, once there is one, the last accuracy."""

    def __init__(self, total: Optional[int], initial: int, desc: str, enabled: bool, position: int = 0) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total or None, initial=initial, desc=desc, unit="step", disable=not enabled,
                        dynamic_ncols=True, position=position)

    def retotal(self, steps: int) -> None:
        self.bar.total = steps
        self.bar.refresh()

    def update(self, head: str, loss: float, acc: Optional[float]) -> None:
        self.bar.update(1)
        post = {"head": head, "loss": f"{loss:.3f}"}
        if acc is not None:
            post["acc"] = f"{acc:.3f}"
        self.bar.set_postfix(post)

    def close(self) -> None:
        self.bar.close()
